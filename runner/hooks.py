"""The trick interface (`Trick`, `Out`). Every trick is one file in runner/tricks/, named as on
the CLI, with a plain functional core (e.g. `flood(loss, b)`) and a thin `Trick` subclass that
plugs the core into the engine.

Hooks (all optional; the engine calls only the hooks a trick overrides, so a trick that is off
costs nothing):

- ``setup(state)``: once, before the first step (ChildTuning-D Fisher mask, EMA copy).
- ``wrap_optimizer(opt) -> opt``: wrap the optimizer (Lookahead).
- ``loss(state, batch, next) -> Out``: middleware around the forward+loss. Call ``next(batch)``
  (possibly with a modified batch), then modify the returned ``Out`` (R-Drop, VAT, flooding,
  gradient penalty, label smoothing, input noise).
- ``backward(state, out, batch, next)``: middleware around the backward. ``next(out, batch)``
  runs the inner backward; extra passes call ``state.forward(batch, delta=...)`` and
  ``state.backward(loss)`` (FGM, PGD).
- ``on_grads(state)``: once per optimizer step, after accumulation and AMP unscaling, before the
  update (clipping, ChildTuning).
- ``on_step_end(state)``: after the optimizer and scheduler step (EMA).
- ``eval_model(state) -> nn.Module | None``: a model to evaluate and checkpoint as best instead of
  the raw one (EMA); the raw model's metrics are then logged under ``val/raw/*``.
- ``state_dict() / load_state_dict(d)``: everything needed to resume exactly.

Ordering: ``order`` (lower = outer wrapper, earlier hook). A config may set ``order`` to change it.
Conventions for ``order``: 10 loss-shaping outermost (flooding), 20 gradient penalties (gradpen,
paramgradpen: of the loss their inner chain returns), 30 consistency (R-Drop, VAT), 50 default
(spectral), 55 label smoothing, 60 input noise (innermost: changes the batch), 70 adversarial
backward (FGM, PGD), 80 gradient masking (ChildTuning), 90 clipping. So ``reg=[rdrop,fgm,flooding]
clip=norm`` runs: forward of the doubled batch -> + R-Drop KL -> flood -> backward -> FGM's extra
pass on the doubled batch (``Out.batch``) -> clip -> step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Out:
    """What a forward pass returns through the loss chain.

    loss:   the scalar to backpropagate (mean over the batch).
    logits: predictions aligned with ``y`` (used for train/acc).
    y:      the targets of ``logits``.
    embed:  the tensor adversarial tricks perturb (model.embed output), when kept.
    parts:  named loss components for logging, e.g. {"ce": ..., "rdrop_kl": ...}; logged as
            ``train/<name>``, averaged over the log interval. Values are 0-d tensors (no sync).
    batch:  the batch the forward actually ran on, after loss tricks changed it (R-Drop's doubled
            batch, input noise's ``delta``): backward tricks and extra passes use it so their
            perturbations match ``embed`` and ``logits`` in shape.
    """

    loss: Any
    logits: Any
    y: Any
    embed: Any = None
    parts: dict = field(default_factory=dict)
    batch: Any = None


class Trick:
    order: int = 50
    #: set True when the trick needs d(loss)/d(embedding) from the clean backward (FGM, PGD)
    needs_embed_grad: bool = False
    #: set True when the loss differentiates a gradient (create_graph): refused with compile
    needs_double_backward: bool = False

    def __init__(self, order: int | None = None):
        if order is not None:
            self.order = order

    @property
    def name(self) -> str:
        return getattr(self, "_name", type(self).__name__.lower())

    def setup(self, state) -> None:
        pass

    def wrap_optimizer(self, opt):
        return opt

    def loss(self, state, batch, next):
        return next(batch)

    def backward(self, state, out, batch, next) -> None:
        next(out, batch)

    def on_grads(self, state) -> None:
        pass

    def on_step_end(self, state) -> None:
        pass

    def eval_model(self, state):
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"


def overrides(trick: Trick, hook: str) -> bool:
    """True when `trick` implements `hook` itself (the engine skips base no-ops)."""
    return getattr(type(trick), hook) is not getattr(Trick, hook)
