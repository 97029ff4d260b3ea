from __future__ import annotations

import torch
from torch import nn

from runner.errors import ConfigError


class Model(nn.Module):
    """Base class: see runner.models for the embed / forward_embedded interface."""

    #: attribute names of the submodules that form the task head (not the encoder)
    head_modules: tuple = ("head",)
    #: the model can be trained as K stacked members (runner.stack): its forward reads the batch
    #: dimensions as `self._lead` leading dims ([B, ...] solo, [K, B, ...] stacked) and its
    #: layers are ones runner.stack stacks. Pretrained encoders never stack.
    stackable: bool = False
    _lead: int = 1

    def embed(self, batch: dict) -> torch.Tensor:
        return batch["x"]

    def forward_embedded(self, h: torch.Tensor, batch: dict) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, batch: dict, delta: torch.Tensor | None = None, return_embed: bool = False):
        """logits = forward_embedded(embed(batch) + delta). With return_embed, also return the
        embedding tensor with its gradient kept (a leaf copy for raw inputs), so FGM/PGD can read
        d(loss)/d(embedding) after the clean backward. One entry point (not embed + rest called
        separately) keeps DDP's gradient hooks and torch.compile working."""
        h = self.embed(batch)
        if return_embed:
            if h.requires_grad:
                h.retain_grad()
            else:
                h = h.detach().requires_grad_(True)
        e = h if delta is None else h + delta
        logits = self.forward_embedded(e, batch)
        return (logits, h) if return_embed else logits

    def embedding_table(self) -> nn.Parameter | None:
        """The token-embedding matrix that `embed` looks rows up in (`embed(batch)` is
        ``table[batch["x"]]``), for tricks that act on the table itself: FGM/PGD with
        ``target=table`` (the blog's form) and LazyOptimizer. None for models that embed
        continuous inputs (mlp, cnn1d)."""
        return None

    def encoder_parameters(self) -> list:
        """The encoder's parameters: all but the embedding tables (every nn.Embedding, and
        `embedding_table()`) and the task head (`head_modules`). ChildTuning-D's scope=encoder
        masks these only, as its reference code masks only BERT's encoder layers."""
        skip = {
            id(p)
            for name in self.head_modules
            if hasattr(self, name)
            for p in getattr(self, name).parameters()
        }
        skip |= {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        table = self.embedding_table()
        if table is not None:
            skip.add(id(table))
        return [p for p in self.parameters() if id(p) not in skip]

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute activations in backward; models that support it override this."""
        if enabled:
            raise ConfigError(
                "trainer.grad_checkpointing",
                f"not supported by {type(self).__name__}",
                "transformer, minilm, hf",
            )
