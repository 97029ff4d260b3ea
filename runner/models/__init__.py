"""Model builders. Every model subclasses `Model` and exposes the tensor adversarial tricks perturb.

The interface (one method pair, all models):

- ``embed(batch) -> h``: the tensor that FGM, PGD, VAT and the input gradient penalty perturb:
  the embedding output for text models, the (float) input itself for continuous data.
- ``forward_embedded(h, batch) -> logits``: the rest of the network.
- ``forward(batch) = forward_embedded(embed(batch), batch)``.

A batch is a dict of tensors: ``x`` (features or token ids), ``y`` (labels) and, for text,
``mask`` (attention mask, 1 = token).
"""

from runner.models.base import Model

__all__ = ["Model"]
