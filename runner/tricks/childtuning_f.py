"""ChildTuning-F: a fresh Bernoulli mask on the gradients at every step ("dropout on gradients").

    g <- g ⊙ m / p,    m ~ Bernoulli(p) elementwise, drawn anew every optimizer step

Dividing by p keeps the masked gradient unbiased. The task-free variant of ChildTuning.

Xu et al., "Raise a Child in Large Language Model: Towards Effective and Generalizable
Fine-tuning", EMNLP 2021.
Su Jianlin, "ChildTuning：试试把Dropout加到梯度上去？", https://kexue.fm/archives/8764 .

Defaults: p = 0.3 (the fraction of gradient entries kept).

Composition: order 80 (gradient masking), in ``on_grads``: after accumulation and AMP unscaling,
before clipping (order 90) and the update. With p = 1 it draws nothing and changes nothing. The
masks come from torch's global generator, which checkpoints save, so a resumed run is exact.
"""

from __future__ import annotations

import torch

from runner.errors import in_range
from runner.tricks import Trick


@torch.no_grad()
def bernoulli_mask_(grads: list, p: float) -> None:
    for g in grads:
        g.mul_(torch.empty_like(g).bernoulli_(p).div_(p))


class ChildTuningF(Trick):
    order = 80

    def __init__(self, p: float = 0.3, order: int | None = None):
        super().__init__(order)
        in_range(p, "reg.childtuning_f.p", 0.0, 1.0, lo_open=True)
        self.p = float(p)

    def on_grads(self, state) -> None:
        if self.p < 1.0:
            bernoulli_mask_(state.grads(), self.p)
