"""SGD (momentum, Nesterov) with decoupled weight decay, as AdamW:

    theta <- theta * (1 - lr * wd);   then torch's SGD step without weight decay

torch's `SGD(weight_decay=...)` adds wd * theta to the gradient (L2 regularisation), which momentum
then accumulates; Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019
(https://arxiv.org/abs/1711.05101) show the decoupled form separates the decay from the learning
signal (their SGDW). Here it makes `optimizer.weight_decay` mean the same for every optimizer.
`decoupled_weight_decay=false` gives torch's L2 form unchanged. Everything else (momentum,
dampening, nesterov, foreach / fused kernels) is torch's SGD.
"""

from __future__ import annotations

import torch

from runner.errors import in_range


class SGDW(torch.optim.SGD):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        decoupled_weight_decay: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        in_range(momentum, "optimizer.momentum", 0.0, 1.0, hi_open=True)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # the loss at the weights before the decay, as in SGD
            with torch.enable_grad():
                loss = closure()
        saved = [g["weight_decay"] for g in self.param_groups]
        if self.decoupled_weight_decay:
            for group in self.param_groups:
                wd = group["weight_decay"]
                ps = [p for p in group["params"] if p.grad is not None]
                if wd and ps:
                    torch._foreach_mul_(ps, 1 - float(group["lr"]) * wd)
                group["weight_decay"] = 0.0
        try:
            _sgd_step(self)
        finally:
            for group, wd in zip(self.param_groups, saved):
                group["weight_decay"] = wd
        return loss


def _sgd_step(opt) -> None:
    """torch's SGD.step without its step-hook wrapper: SGDW.step is itself wrapped by torch, so
    calling the wrapped parent would run every registered step hook twice."""
    fn = torch.optim.SGD.step
    while getattr(fn, "hooked", False):
        fn = fn.__wrapped__
    fn(opt)
