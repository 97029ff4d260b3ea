"""Label smoothing: train towards (1 - eps)·one_hot(y) + eps·uniform.

    CE_ls = (1 - eps) · CE(logits, y) + eps · mean_c(-log softmax(logits)_c)
          = CE + eps · (mean_c(-log p_c) - CE)

Applied as the second form, a correction added to whatever loss the inner chain returns, so it
replaces exactly the cross-entropy part of ``Out.loss`` (the same as torch's
``cross_entropy(label_smoothing=eps)`` when the loss is the plain CE).

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016;
Müller, Kornblith & Hinton, "When Does Label Smoothing Help?", NeurIPS 2019.
(No kexue.fm post is specific to it.)

Defaults: eps = 0.1. Single-label cross-entropy only (loss=ce): with a multi-label loss setup
says so in one line. Semi-supervised batches: the correction is the mean over labelled rows, like
the cross-entropy it corrects.

Composition: order 55, inside the consistency tricks (R-Drop sees the smoothed CE of both passes),
outside input noise. The extra passes of FGM/PGD/VAT use the plain cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import ConfigError, in_range
from runner.tricks import Trick


def smoothing_correction(logits, y, eps: float, labeled=None):
    """CE_ls - CE for the mean over the batch (over its labelled rows with `labeled`); logits
    [K, B, C] (a stacked run): each member's, [K] (eps a number or [K])."""
    lp = F.log_softmax(logits.float(), -1)
    if labeled is None:
        ce = -lp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return eps * (-lp.mean(-1) - ce).mean(-1)
    ce = -lp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # unlabelled: y = -1
    w = labeled.to(lp.dtype)
    return eps * ((-lp.mean(-1) - ce) * w).sum() / w.sum().clamp(min=1)


class LabelSmoothing(Trick):
    order = 55
    figures = ()
    noop = {"eps": 0.0}
    noop_exact = True  # eps = 0 adds nothing
    passes = "1"
    stackable = True
    stack_keys = ("eps",)

    def __init__(self, eps: float = 0.1, order: int | None = None):
        super().__init__(order)
        in_range(eps, "reg.label_smoothing.eps", 0.0, 1.0, hi_open=True)
        self.eps = float(eps)

    def setup(self, state) -> None:
        if getattr(state.loss, "multilabel", False):
            raise ConfigError(
                "reg.label_smoothing",
                f"smooths a single-label cross-entropy; loss={state.loss.name} is multi-label",
                "loss=ce",
            )

    def loss(self, state, batch, next):
        out = next(batch)
        if torch.is_tensor(self.eps) or self.eps:  # a tensor: per-member eps (a stack)
            lab = out.batch.get("labeled") if out.batch is not None else None
            out.loss = out.loss + smoothing_correction(out.logits, out.y, self.eps, lab)
        return out
