"""Dataset builders. A builder returns a `Data`: train / val / test splits as dicts of tensors
(``x``, ``y`` and, for text, ``mask``) plus ``info`` for the model builder (``in_dim``,
``num_classes``, ``vocab_size``, ``max_len``...). Small datasets live on the device and are
batched by indexing (runner.data.batching): no DataLoader overhead.
"""

from runner.data.base import Data

__all__ = ["Data"]
