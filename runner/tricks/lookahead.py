"""Lookahead: k steps forward, 1 step back.

Every k optimizer steps the slow weights move a fraction alpha towards the fast weights, and the
fast weights restart from there:

    Theta <- Theta + alpha * (theta - Theta);   theta <- Theta

Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019,
https://arxiv.org/abs/1907.08610. Su Jianlin, "Keras实现两个优化器：Lookahead和LazyOptimizer",
https://kexue.fm/archives/6869, and "6个派生优化器的简单介绍及其实现",
https://kexue.fm/archives/7094 (Lookahead as one of the derived optimizers that wrap any optimizer).

Defaults: k = 5, alpha = 0.5 (the paper's). Works on top of any optimizer: `derived=[lookahead]`.

How it plugs in: `wrap_optimizer` returns the *same* optimizer instance with a step post-hook
(`Optimizer.register_step_post_hook`) that counts real optimizer steps and syncs every k-th. A
wrapper object would not be a `torch.optim.Optimizer`, which LambdaLR and GradScaler require; a
hook keeps the optimizer, its fused kernels, its state_dict and the scheduler untouched, and a step
skipped by the GradScaler (inf gradients) or by `trainer.on_nan=skip` is not counted. The inner
optimizer's state (e.g. Adam moments) is kept across syncs (not reset), the usual choice.
The slow weights and the step counter are this trick's checkpoint state. Evaluation uses the
current (fast) weights; right after a sync they equal the slow ones.
Ordering: order 60, after `layer_adapt` (40), whose post-hook must rescale the update first.
"""

from __future__ import annotations

import torch

from runner.errors import in_range, positive
from runner.tricks import Trick


@torch.no_grad()
def lookahead_sync(fast: list, slow: list, alpha: float) -> None:
    """Theta <- Theta + alpha (theta - Theta); theta <- Theta, in place on lists of tensors."""
    torch._foreach_lerp_(slow, fast, alpha)
    torch._foreach_copy_(fast, slow)


class Lookahead(Trick):
    order = 60
    figures = ()
    noop = {"alpha": 1.0}
    noop_exact = True
    passes = "1 (+ every k steps)"
    stackable = True  # element-wise over the stacked weights (k and alpha shared)

    def __init__(self, k: int = 5, alpha: float = 0.5, order: int | None = None):
        super().__init__(order)
        positive(k, "derived.lookahead.k", integer=True)
        in_range(alpha, "derived.lookahead.alpha", 0.0, 1.0, lo_open=True)
        self.k, self.alpha = int(k), float(alpha)
        self.steps = 0
        self.params: list = []
        self.slow: list = []

    def wrap_optimizer(self, opt):
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.slow = [p.detach().clone() for p in self.params]
        opt.register_step_post_hook(self._after_step)
        return opt

    def _after_step(self, opt, args, kwargs) -> None:
        self.steps += 1
        if self.steps % self.k == 0:
            lookahead_sync([p.detach() for p in self.params], self.slow, self.alpha)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "slow": [s.clone() for s in self.slow]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        with torch.no_grad():
            for s, v in zip(self.slow, state["slow"], strict=True):
                s.copy_(v)
