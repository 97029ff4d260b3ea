"""Any transformers encoder (AutoModel) by Hub name or local folder, plus a classification head.

    tricks train dataset=tweets model=hf model.name=bert-base-uncased optimizer.lr=3e-5
    tricks train dataset=tweets model=hf model.name=/path/to/checkpoint optimizer.lr=3e-5

`model.tokenizer` (default: the same name) is the tokenizer the dataset is tokenized with.
Head: pooling (`cls`: the first token's last hidden state; `mean`: mean over real tokens;
`pooler`: the model's own pooler output, e.g. BERT's tanh dense layer) -> dropout -> linear.
`encoder_dropout`, when set, overrides the encoder's own dropout rates (hidden and attention
probabilities; whichever of the config keys the architecture has); R-Drop needs dropout > 0.

What adversarial tricks perturb (FGM, PGD, VAT, gradient penalty): `embed(batch)` is the output
of the *word*-embedding layer (`get_input_embeddings()`), and `forward_embedded` feeds it back as
`inputs_embeds`, so the encoder adds position and token-type embeddings, LayerNorm and dropout
after the perturbation. This is the tensor Miyato et al. 2017 ("Adversarial Training Methods for
Semi-Supervised Text Classification") perturb and the Embedding-Token output that Su Jianlin's
FGM implementation perturbs; the from-scratch model (models.transformer) uses the same
convention, so an epsilon means the same thing on every text model.

`set_grad_checkpointing(True)` -> transformers' activation (gradient) checkpointing, non-reentrant
(RNG state preserved: same gradients with dropout on, tested).
No network: a Hub name that is not cached fails with one line saying the Hub cannot be reached.
"""

from __future__ import annotations

import copy

from torch import nn

from runner.data.text import hub_error, quiet_transformers
from runner.errors import ConfigError, check, in_range
from runner.models.base import Model

POOLINGS = ("cls", "mean", "pooler")
# Config keys of encoder dropout across architectures (BERT, RoBERTa, DistilBERT, ...).
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "hidden_dropout",
    "attention_probs_dropout",
)


# The last pretrained encoder loaded in this process, kept pristine on the CPU: the jobs of an
# in-process sweep (Hydra's basic launcher) and tests get a copy instead of re-reading it.
_LAST: dict = {}


def load_encoder(name: str, pooling: str, encoder_dropout, revision=None):
    key = (str(name), pooling == "pooler", encoder_dropout, revision)
    if key not in _LAST:
        model = _load_encoder(name, pooling, encoder_dropout, revision)
        _LAST.clear()
        _LAST[key] = model
    return copy.deepcopy(_LAST[key])


def _load_encoder(name: str, pooling: str, encoder_dropout, revision=None):
    quiet_transformers()
    from transformers import AutoConfig, AutoModel  # the optional `text` extra

    kw = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(name, **kw)
    except Exception as e:
        raise ConfigError("model.name", hub_error(e, name))
    if encoder_dropout is not None:
        in_range(encoder_dropout, "model.encoder_dropout", 0.0, 1.0, hi_open=True)
        for k in DROPOUT_KEYS:
            if isinstance(getattr(config, k, None), float):
                setattr(config, k, float(encoder_dropout))
    try:
        try:  # no unused pooler weights unless asked (DDP would see parameters without grads)
            return AutoModel.from_pretrained(
                name, config=config, add_pooling_layer=pooling == "pooler", **kw
            )
        except TypeError:
            return AutoModel.from_pretrained(name, config=config, **kw)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError("model.name", hub_error(e, name))


class HFEncoder(Model):
    def __init__(
        self,
        num_classes: int,
        name: str | None = None,
        dropout: float = 0.1,
        encoder_dropout: float | None = None,
        pooling: str = "cls",
        tokenizer: str | None = None,
        max_len: int | None = None,
        vocab_size: int | None = None,
        revision: str | None = None,
    ):
        super().__init__()
        check(
            isinstance(name, str) and name != "",
            "model.name",
            "required: a transformers model name or a local folder",
        )
        check(pooling in POOLINGS, "model.pooling", f"got {pooling!r}", ", ".join(POOLINGS))
        in_range(dropout, "model.dropout", 0.0, 1.0, hi_open=True)
        if max_len is None:
            raise ConfigError(
                "dataset",
                f"model={self.config_name} reads token ids: pick a text dataset",
                "tweets, csv or hf with a text_column",
            )
        self.encoder = load_encoder(name, pooling, encoder_dropout, revision)
        cfg = self.encoder.config
        limit = getattr(cfg, "max_position_embeddings", None)
        if limit is not None and max_len > limit:
            raise ConfigError(
                "dataset.max_len", f"{max_len} exceeds the {limit} positions of {name}"
            )
        n_emb = self.encoder.get_input_embeddings().num_embeddings
        if vocab_size is not None and vocab_size > n_emb:
            raise ConfigError(
                "model.tokenizer",
                f"its vocabulary ({vocab_size}) is larger than "
                f"the embeddings of {name} ({n_emb}): use the model's tokenizer",
            )
        if pooling == "pooler" and getattr(self.encoder, "pooler", None) is None:
            raise ConfigError("model.pooling", f"{name} has no pooler", "cls, mean")
        self.pooling = pooling
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.hidden_size, num_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    config_name = "hf"

    def embed(self, batch):
        return self.encoder.get_input_embeddings()(batch["x"])

    def embedding_table(self):
        return self.encoder.get_input_embeddings().weight

    def encoder_parameters(self):
        # the rule of ChildTuning's reference code: names containing 'layer' (BERT's
        # encoder.layer.N.*; not embeddings, their LayerNorm, the pooler, or our head)
        return [p for n, p in self.encoder.named_parameters() if "layer" in n]

    def forward_embedded(self, h, batch):
        kw = {"inputs_embeds": h, "attention_mask": batch["mask"]}
        if "token_type_ids" in batch:
            kw["token_type_ids"] = batch["token_type_ids"]
        out = self.encoder(**kw)
        if self.pooling == "pooler":
            pooled = out.pooler_output
        elif self.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        else:
            x = out.last_hidden_state
            w = batch["mask"].unsqueeze(-1).to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(self.drop(pooled))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        if not getattr(self.encoder, "supports_gradient_checkpointing", False):
            super().set_grad_checkpointing(enabled)
            return
        enc = self.encoder
        if hasattr(enc, "activation_checkpointing_enable"):  # transformers >= 5.x names
            if enabled:
                enc.activation_checkpointing_enable({"use_reentrant": False})
            else:
                enc.activation_checkpointing_disable()
        elif enabled:
            enc.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            enc.gradient_checkpointing_disable()

    @property
    def grad_checkpointing(self) -> bool:
        enc = self.encoder
        return bool(
            getattr(enc, "is_activation_checkpointing", None)
            if hasattr(type(enc), "is_activation_checkpointing")
            else enc.is_gradient_checkpointing
        )
