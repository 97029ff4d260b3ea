"""R-Drop: two dropout passes of the same batch must agree.

    loss = mean CE over both passes + alpha/4 · mean_i [ KL(p1_i ‖ p2_i) + KL(p2_i ‖ p1_i) ]

p1, p2 are the predicted distributions of the two passes, which differ only by their dropout masks.
The divergence is the run's loss's (``state.loss.divergence(..., symmetric=True)``,
runner.losses): the symmetric KL above for cross-entropy; for a multi-label loss (loss=
multilabel_ce | bce) the blog's Σ_i (σ(s_i) − σ(t_i))(s_i − t_i) between the two passes' scores
("GlobalPointer下的“KL散度”应该是怎样的？", https://kexue.fm/archives/9039), with the same alpha/4.
Label-free: on semi-supervised data (dataset.labeled_fraction) the KL sees every row, labelled or
not; the cross-entropy sees the labelled rows only.
Both passes are one forward of the batch concatenated with itself (one kernel launch per layer
instead of two: faster per step than two forwards, docs/bench.md), and gradients flow through both
sides of the KL, as in the paper.

Liang et al., "R-Drop: Regularized Dropout for Neural Networks", NeurIPS 2021.
Su Jianlin, "又是Dropout两次！这次它做到了有监督任务的SOTA", https://kexue.fm/archives/8496 — the
alpha/4 normalisation of the symmetric KL is the blog's.

Defaults: alpha = 4. Needs dropout: with none, both passes are identical and the KL is 0, so
setup warns once (set e.g. model.dropout=0.1).

Composition: order 30 (consistency). Inner loss tricks (label smoothing, input noise) see the
doubled batch; outer ones (flooding, gradient penalties) see the total. The doubled batch is
recorded on ``Out.batch``, so backward tricks (FGM, PGD) perturb both copies consistently.
Logged: ``train/rdrop_kl``, the mean symmetric KL (before the alpha/4 factor).
"""

from __future__ import annotations

import sys

import torch

from runner.errors import positive
from runner.losses import symmetric_kl  # noqa: F401  (the functional core, importable here)
from runner.tricks import Trick


def double(batch: dict, dim: int = 0) -> dict:
    """The batch concatenated with itself along its rows' dim (every per-sample tensor; dim 1
    in a stacked run's [K, B, ...] batches)."""
    n = batch["y"].shape[dim]
    rows = lambda v: torch.is_tensor(v) and v.dim() > dim and v.shape[dim] == n
    return {k: torch.cat([v, v], dim) if rows(v) else v for k, v in batch.items()}


def has_dropout(model: torch.nn.Module) -> bool:
    return any(
        isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()
    )


class RDrop(Trick):
    order = 30
    figures = ("train/rdrop_kl",)
    noop = {"alpha": 0.0}
    noop_exact = False  # the doubled batch's mean CE: other dropout masks, other sum order
    passes = "2 (one doubled batch)"
    stackable = True  # the doubled batch and the KL per member
    stack_keys = ("alpha",)

    def __init__(self, alpha: float = 4.0, order: int | None = None):
        super().__init__(order)
        positive(alpha, "reg.rdrop.alpha", allow_zero=True)
        self.alpha = float(alpha)

    def setup(self, state) -> None:
        if not has_dropout(state.raw_model) and state.is_main:
            print(
                "warning: reg.rdrop: the model has no dropout (p > 0), so both passes agree and "
                "the KL term is 0; set a dropout rate, e.g. model.dropout=0.1",
                file=sys.stderr,
            )

    def loss(self, state, batch, next):
        dim = state.batch_dim  # 1 in a stack: each member's own rows doubled, its own KL
        out = next(double(batch, dim))
        n = out.logits.shape[dim] // 2
        lg = out.logits
        kl = state.loss.divergence(lg.narrow(dim, 0, n), lg.narrow(dim, n, n), symmetric=True)
        kl = kl.mean(-1)
        out.loss = out.loss + self.alpha / 4 * kl
        out.parts["rdrop_kl"] = kl.detach()
        return out
