"""Adafactor as the blog writes it (Su Jianlin, "AdaFactor优化器浅析（附开源实现）",
https://kexue.fm/archives/7302, after Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost", ICML 2018, https://arxiv.org/abs/1804.04235):

    β̂2_t = 1 - t^(-c)                                  c = 0.8 (`beta2_decay` = -c)
    g2   = g² + ε1                                      ε1 = 1e-30
    matrix (both of its two largest dims >= `min_dim_size_to_factor`), factored second moment:
      r_t = β̂2_t r + (1 - β̂2_t) mean_cols(g2)         one number per row
      c_t = β̂2_t c + (1 - β̂2_t) mean_rows(g2)         one number per column
      v̂_t = r_t c_tᵀ / mean(r_t)
    otherwise: v̂_t = β̂2_t v + (1 - β̂2_t) g2
    u_t  = g / sqrt(v̂_t);   û_t = u_t / max(1, RMS(u_t) / d)           update clipping, d = 1
    (β1 > 0: û_t <- m_t = β1 m + (1 - β1) û_t; off by default, as the post)
    ρ_t  = min(lr, 1/sqrt(t))                           relative step, lr = 1e-2
    α_t  = max(ε2, RMS(θ_{t-1})) · ρ_t                  parameter scale, ε2 = 1e-3
    θ_t  = θ_{t-1} - α_t û_t

torch.optim.Adafactor differs from this: its ε1 (the dtype's eps, 1.2e-7 in float32) floors
sqrt(v̂) instead of being added to g², it factors every tensor of >= 2 dims, and it reads its
step counter and two norms on the host every step. conf/optimizer/adafactor.yaml uses this class.

Weight decay is decoupled as in AdamW (θ <- θ (1 - lr · wd), lr the scheduled relative step
cap), off by default. The learning-rate schedule scales `lr`, the cap of ρ_t. Sync-free: the step
count is a Python int in the state, every norm stays on the device.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from runner.errors import ConfigError, in_range, positive


def _factored(shape, min_dim: int):
    """(row dim, col dim) to factor over, or None: the two largest dims, both >= min_dim."""
    if len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: shape[i])
    r, c = order[-2], order[-1]
    if shape[r] < min_dim:
        return None
    return r, c


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.float().pow(2).mean().sqrt()


class Adafactor(Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps=(1e-30, 1e-3),
        d: float = 1.0,
        beta1: float = 0.0,
        weight_decay: float = 0.0,
        min_dim_size_to_factor: int = 128,
        *,
        maximize: bool = False,
    ):
        positive(lr, "optimizer.lr")
        check_eps = isinstance(eps, (list, tuple)) and len(eps) == 2
        if not check_eps:
            raise ConfigError("optimizer.eps", f"must be two numbers [eps1, eps2], got {eps!r}")
        eps1 = 1e-30 if eps[0] is None else eps[0]
        positive(eps1, "optimizer.eps[0]")
        positive(eps[1], "optimizer.eps[1]")
        if not isinstance(beta2_decay, (int, float)) or not beta2_decay < 0:
            raise ConfigError("optimizer.beta2_decay", f"must be < 0, got {beta2_decay!r}")
        positive(d, "optimizer.d")
        in_range(beta1, "optimizer.beta1", 0.0, 1.0, hi_open=True)
        positive(weight_decay, "optimizer.weight_decay", allow_zero=True)
        positive(min_dim_size_to_factor, "optimizer.min_dim_size_to_factor", integer=True)
        defaults = dict(
            lr=lr,
            beta2_decay=float(beta2_decay),
            eps=(float(eps1), float(eps[1])),
            d=float(d),
            beta1=float(beta1),
            weight_decay=float(weight_decay),
            min_dim_size_to_factor=int(min_dim_size_to_factor),
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _state(self, p, group):
        st = self.state[p]
        if not st:
            st["step"] = 0
            f = _factored(p.shape, group["min_dim_size_to_factor"])
            if f is None:
                st["v"] = torch.zeros_like(p, dtype=torch.float32)
            else:
                r, c = f
                st["v_row"] = torch.zeros_like(p, dtype=torch.float32).mean(dim=c, keepdim=True)
                st["v_col"] = torch.zeros_like(p, dtype=torch.float32).mean(dim=r, keepdim=True)
            if group["beta1"] > 0:
                st["m"] = torch.zeros_like(p, dtype=torch.float32)
        return st

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients")
                self._update(p, p.grad, self._state(p, group), group)
        return loss

    def _update(self, p, grad, st, group) -> None:
        eps1, eps2 = group["eps"]
        lr = float(group["lr"])
        st["step"] += 1
        t = st["step"]
        beta2 = 1.0 - t ** group["beta2_decay"]
        g = grad.float()
        if group["maximize"]:
            g = -g
        g2 = g * g + eps1
        f = _factored(p.shape, group["min_dim_size_to_factor"])
        if f is None:
            v = st["v"].mul_(beta2).add_(g2, alpha=1 - beta2)
        else:
            r, c = f
            vr = st["v_row"].mul_(beta2).add_(g2.mean(dim=c, keepdim=True), alpha=1 - beta2)
            vc = st["v_col"].mul_(beta2).add_(g2.mean(dim=r, keepdim=True), alpha=1 - beta2)
            v = vr * vc / vr.mean(dim=r, keepdim=True)
        u = g / v.sqrt()
        u = u / (_rms(u) / group["d"]).clamp_min(1.0)
        if group["beta1"] > 0:
            u = st["m"].mul_(group["beta1"]).add_(u, alpha=1 - group["beta1"])
        alpha = _rms(p).clamp_min(eps2) * min(lr, t**-0.5)
        if group["weight_decay"]:
            p.mul_(1 - lr * group["weight_decay"])
        p.sub_((alpha * u).to(p.dtype))
