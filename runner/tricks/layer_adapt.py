"""Layer adaptation (LAMB's trust ratio) on top of any optimizer.

With u the optimizer's own update direction (its step divided by the learning rate, decoupled
weight decay included), each parameter tensor ("layer") takes a step of the same relative size:

    theta <- theta - lr * (||theta|| / ||u||) * u

so the update keeps the optimizer's direction and its length is lr times the parameter's norm.
You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020,
https://arxiv.org/abs/1904.00962 (LAMB = Adam + this).
Su Jianlin, "6个派生优化器的简单介绍及其实现", https://kexue.fm/archives/7094, section 层自适应
(bert4keras `extend_with_layer_adaptation`: the ratio is 1 when ||theta|| = 0 or the update is 0,
which we follow).

How it plugs in: `wrap_optimizer` registers a step pre-hook (remember theta and lr) and a step
post-hook (rescale theta_new - theta) on the optimizer itself, so it works with every optimizer
(AdamW -> LAMB-like, SGD -> LARS-like, Lion, Tiger, Adafactor), with fused kernels, LambdaLR and
the GradScaler (a skipped step runs no hook). Cost: one copy of the adapted parameters per step.

Options: `adapt_bias_and_norm: false` (the default, as LAMB implementations commonly do) leaves
1-D parameters (biases, normalisation weights) with the plain update; `max_ratio` optionally caps
the ratio.
No state to checkpoint. Order 40: before Lookahead's post-hook.
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick


@torch.no_grad()
def trust_ratio(
    theta: torch.Tensor, step: torch.Tensor, lr: float, max_ratio: float | None = None
) -> torch.Tensor:
    """||theta|| / ||u|| with u = step / lr; 1 where either norm is 0."""
    dt = torch.float32 if theta.dtype in (torch.float16, torch.bfloat16) else theta.dtype
    p_norm = torch.linalg.vector_norm(theta, dtype=dt)
    u_norm = torch.linalg.vector_norm(step, dtype=dt) / lr
    ok = (p_norm > 0) & (u_norm > 0)
    r = torch.where(ok, p_norm / torch.where(ok, u_norm, 1.0), 1.0)
    return r.clamp(max=max_ratio) if max_ratio is not None else r


class LayerAdapt(Trick):
    order = 40
    figures = ()
    noop = None
    noop_exact = None
    passes = "1"
    stackable = False  # runs using it train solo (runner.stack_run)

    def __init__(
        self,
        adapt_bias_and_norm: bool = False,
        max_ratio: float | None = None,
        order: int | None = None,
    ):
        super().__init__(order)
        if max_ratio is not None:
            positive(max_ratio, "derived.layer_adapt.max_ratio")
        self.adapt_bias_and_norm = bool(adapt_bias_and_norm)
        self.max_ratio = max_ratio
        self._saved: list = []

    def wrap_optimizer(self, opt):
        opt.register_step_pre_hook(self._before_step)
        opt.register_step_post_hook(self._after_step)
        return opt

    def _adapted(self, opt):
        for g in opt.param_groups:
            lr = float(g["lr"])
            for p in g["params"]:
                if p.grad is not None and (p.ndim >= 2 or self.adapt_bias_and_norm):
                    yield p, lr

    def _before_step(self, opt, args, kwargs) -> None:
        self._saved = [(p, lr, p.detach().clone()) for p, lr in self._adapted(opt) if lr > 0]

    @torch.no_grad()
    def _after_step(self, opt, args, kwargs) -> None:
        for p, lr, old in self._saved:
            step = p.detach() - old
            r = trust_ratio(old, step, lr, self.max_ratio)
            p.copy_(old.add_(step.mul_(r.to(step.dtype))))
        self._saved = []
