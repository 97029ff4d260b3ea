"""Optimizers over stacked parameters [K, ...] (runner.stack) with per-member hyperparameters.

Each param group carries `member_lr` and `member_wd`, [K] tensors (member k's optimizer.lr and
weight_decay); the group's own `lr` is the schedule's multiplier (1.0 before LambdaLR scales it),
so member k's learning rate at a step is member_lr[k] * group lr: what its solo run's LambdaLR
gives it. The updates are the solo optimizers' element-wise formulas with the per-member factors
broadcast over each tensor's member dimension (foreach ops over the group's tensors, no host
read), so member k follows its solo run to float rounding:

- `StackedAdamW`: torch.optim.AdamW (decoupled decay, bias corrections; amsgrad not supported);
- `StackedSGDW`: runner.optim.sgdw.SGDW (decoupled decay, momentum, dampening, Nesterov);
- `StackedLion`: runner.optim.lion.Lion (Tiger is Lion with beta1 = beta2).

`zero_member(k)` clears member k's state (a member that failed: its params are zeroed by the
caller and its lr set to 0, so its NaNs never reach anything).
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def _per_member(v: torch.Tensor, like: list) -> list:
    """[K] (float64) -> one view per tensor of `like`, broadcastable over its member dimension,
    in the tensor's dtype: the solo kernels compute a factor in double and round it to the
    parameter's dtype once, and so does this."""
    cast = {}
    out = []
    for p in like:
        c = cast.get(p.dtype)
        if c is None:
            c = cast[p.dtype] = v.to(p.dtype)
        out.append(c.view(-1, *([1] * (p.dim() - 1))))
    return out


class _Stacked(Optimizer):
    def __init__(self, groups: list, defaults: dict):
        super().__init__(groups, {**defaults, "lr": 1.0})
        for g in self.param_groups:  # read once here: a read per step would sync on CUDA
            g.setdefault("decays", bool(g["member_wd"].any()))

    def _active(self, group):
        ps = [p for p in group["params"] if p.grad is not None]
        return ps, [p.grad for p in ps]

    def member_lr(self, group) -> torch.Tensor:
        return group["member_lr"] * group["lr"]

    @torch.no_grad()
    def zero_member(self, k: int) -> None:
        for st in self.state.values():
            for v in st.values():
                if torch.is_tensor(v) and v.dim() > 0:
                    v[k].zero_()
        for g in self.param_groups:
            g["member_lr"][k] = 0.0

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            ps, gs = self._active(group)
            if ps:
                lr = self.member_lr(group)
                if group["decays"]:  # p <- p * (1 - lr * wd), as the solo optimizers
                    torch._foreach_mul_(ps, _per_member(1 - lr * group["member_wd"], ps))
                self._update(group, ps, gs, lr)


class StackedAdamW(_Stacked):
    def __init__(self, groups, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(groups, dict(betas=tuple(betas), eps=eps))

    def _update(self, group, ps, gs, lr):
        b1, b2 = group["betas"]
        ms, vs = [], []
        for p in ps:
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["exp_avg"] = torch.zeros_like(p)
                st["exp_avg_sq"] = torch.zeros_like(p)
            st["step"] += 1
            ms.append(st["exp_avg"])
            vs.append(st["exp_avg_sq"])
        step = self.state[ps[0]]["step"]
        # the order of torch's fused AdamW kernel: v*b2 + ((1-b2)*g)*g, sqrt(v)/sqrt(bc2) + eps,
        # p + (-lr/bc1 * m) / denom
        torch._foreach_lerp_(ms, gs, 1 - b1)
        torch._foreach_mul_(vs, b2)
        g2 = torch._foreach_mul(gs, 1 - b2)
        torch._foreach_mul_(g2, gs)
        torch._foreach_add_(vs, g2)
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, group["eps"])
        upd = torch._foreach_mul(ms, _per_member(-lr / bc1, ps))
        torch._foreach_div_(upd, denom)
        torch._foreach_add_(ps, upd)


class StackedSGDW(_Stacked):
    def __init__(self, groups, momentum=0.0, dampening=0.0, nesterov=False):
        super().__init__(groups, dict(momentum=momentum, dampening=dampening, nesterov=nesterov))

    def _update(self, group, ps, gs, lr):
        mom, damp = group["momentum"], group["dampening"]
        if mom:
            bufs = []
            for p, g in zip(ps, gs):
                st = self.state[p]
                if "momentum_buffer" not in st:  # torch's SGD: the first buffer is the gradient
                    st["momentum_buffer"] = g.clone()
                else:
                    st["momentum_buffer"].mul_(mom).add_(g, alpha=1 - damp)
                bufs.append(st["momentum_buffer"])
            gs = torch._foreach_add(gs, bufs, alpha=mom) if group["nesterov"] else bufs
        torch._foreach_add_(ps, torch._foreach_mul(gs, _per_member(-lr, ps)))


class StackedLion(_Stacked):
    def __init__(self, groups, betas=(0.9, 0.99)):
        super().__init__(groups, dict(betas=tuple(betas)))

    def _update(self, group, ps, gs, lr):
        b1, b2 = group["betas"]
        ms = []
        for p in ps:
            st = self.state[p]
            if not st:
                st["exp_avg"] = torch.zeros_like(p)
            ms.append(st["exp_avg"])
        c = torch._foreach_lerp(ms, gs, 1 - b1)
        torch._foreach_sign_(c)
        torch._foreach_add_(ps, torch._foreach_mul(c, _per_member(-lr, ps)))
        torch._foreach_lerp_(ms, gs, 1 - b2)
