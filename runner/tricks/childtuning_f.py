"""ChildTuning-F: a fresh Bernoulli mask on the gradients at every step ("dropout on gradients").

    g <- g ⊙ m / p,    m ~ Bernoulli(p) elementwise, drawn anew every optimizer step

Dividing by p keeps the masked gradient unbiased. The task-free variant of ChildTuning.

Xu et al., "Raise a Child in Large Language Model: Towards Effective and Generalizable
Fine-tuning", EMNLP 2021.
Su Jianlin, "ChildTuning：试试把Dropout加到梯度上去？", https://kexue.fm/archives/8764 .

Defaults: p = 0.3 (the fraction of gradient entries kept).

The mask is drawn as packed random bits (`keep_mask`): one 64-bit draw of torch's generator
gives four 15-bit uniform integers u, and an entry is kept when u < round(p * 2^15). That is
Bernoulli(p') with p' = round(p * 2^15) / 2^15 (|p' - p| <= 2^-16, e.g. 0.29999 for 0.3), and
the kept entries are divided by p' itself, so the masked gradient stays exactly unbiased. It
costs a quarter of the generator calls of `bernoulli_` (one per entry, a serial kernel on CPU):
the mask over every weight at every step is this trick's whole cost.

Composition: order 80 (gradient masking), in ``on_grads``: after accumulation and AMP unscaling,
before clipping (order 90) and the update. With p = 1 it draws nothing and changes nothing. The
masks come from torch's global generator, which checkpoints save, so a resumed run is exact.
"""

from __future__ import annotations

import torch

from runner.errors import in_range
from runner.tricks import Trick

#: p is resolved to a multiple of 2^-BITS (the masks compare BITS-bit uniform integers)
BITS = 15


def keep_threshold(p: float) -> int:
    """The integer t with P(u < t) = t / 2^BITS closest to p, u uniform on [0, 2^BITS)."""
    return min(1 << BITS, max(1, round(p * (1 << BITS))))


def keep_mask(n: int, t: int, device) -> torch.Tensor:
    """n Bernoulli(t / 2^BITS) draws (bool), four per 64-bit draw of the global generator."""
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    # random_() fills [0, 2^63): the low 15 bits of each 16-bit quarter are uniform
    return words.view(torch.int16)[:n].bitwise_and_((1 << BITS) - 1) < t


@torch.no_grad()
def bernoulli_mask_(grads: list, p: float) -> None:
    """g <- g * m / p' for every gradient, m ~ Bernoulli(p') elementwise (p' as above)."""
    t = keep_threshold(p)
    if t == 1 << BITS or not grads:
        return
    groups = {}
    for g in grads:
        groups.setdefault(g.device, []).append(g)
    for device, gs in groups.items():
        mask = keep_mask(sum(g.numel() for g in gs), t, device)
        off = 0
        for g in gs:
            g.mul_(mask[off : off + g.numel()].view_as(g))
            off += g.numel()
        torch._foreach_mul_(gs, (1 << BITS) / t)


class ChildTuningF(Trick):
    order = 80
    figures = ()
    noop = {"p": 1.0}
    noop_exact = True
    passes = "1 (+ mask)"
    stackable = False  # runs using it train solo (runner.stack_run)

    def __init__(self, p: float = 0.3, order: int | None = None):
        super().__init__(order)
        in_range(p, "reg.childtuning_f.p", 0.0, 1.0, lo_open=True)
        self.p = float(p)

    def on_grads(self, state) -> None:
        if self.p < 1.0:
            bernoulli_mask_(state.grads(), self.p)
