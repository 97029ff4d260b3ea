"""Lion: EvoLved sIgn mOmeNtum.

    c = beta1 * m + (1 - beta1) * g          # interpolate momentum and gradient
    theta <- theta - lr * (sign(c) + wd * theta)   # decoupled weight decay, as AdamW
    m <- beta2 * m + (1 - beta2) * g

Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023,
https://arxiv.org/abs/2302.06675. Su Jianlin, "Google新搜出的优化器Lion：效率与效果兼得的“训练狮”",
https://kexue.fm/archives/9473 (every coordinate moves by exactly lr, so the update norm is large:
lr must be smaller and weight decay larger than AdamW's).

Defaults: betas (0.9, 0.99), the paper's; (0.95, 0.98) for NLP (the paper's stability advice,
taken by the blog). The paper's advice: a learning rate 3-10x smaller and a weight decay 3-10x
larger than AdamW's, keeping lr * wd (the effective decay strength) similar; the blog's: at least
10x smaller (conf/optimizer/lion.yaml takes the blog's).
Lion is worse than AdamW at small batch sizes (< 64 in the paper): the sign adds noise.

State: one momentum buffer per parameter (`exp_avg`), half of AdamW's. The update is written with
`torch._foreach_*` ops over each (device, dtype) group on an accelerator (no fused kernel, no
per-parameter Python loop on the hot path). On CPU the default walks each tensor larger than
CHUNK elements in chunks through one small scratch buffer instead (the rest: foreach): the
foreach form allocates a temporary as large as the parameters at each step (88 MB on MiniLM),
and fresh pages cost more than the arithmetic there (`scripts/bench_optim.py`: MiniLM's shapes,
one thread, Lion's step ~0.2x torch's AdamW's chunked, ~0.5x foreach). Every form does the same
element-wise ops in the same order: bit-identical to the per-tensor reference loop
(`foreach=False`). The reference package
`lion-pytorch` computes the same update (tests/test_optim_lion.py).
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

from runner.errors import ConfigError, in_range, positive


def _check(lr, betas, weight_decay, key: str = "optimizer") -> tuple[float, float]:
    positive(lr, f"{key}.lr")
    positive(weight_decay, f"{key}.weight_decay", allow_zero=True)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ConfigError(f"{key}.betas", f"must be two numbers [beta1, beta2], got {betas!r}")
    for i, b in enumerate(betas):
        in_range(b, f"{key}.betas[{i}]", 0.0, 1.0, hi_open=True)
    return float(betas[0]), float(betas[1])


CHUNK = 1 << 18  # elements of a chunk of the CPU path: 1 MB of float32, cache-sized


def _chunked(params, grads, exp_avgs, lr, beta1, beta2, weight_decay, maximize, chunk) -> None:
    """The per-tensor loop over flat chunks through one scratch buffer (no step-sized temporary)."""
    big = max(p.numel() for p in params)
    buf = torch.empty(min(chunk, big), dtype=params[0].dtype, device=params[0].device)
    for p, g, m in zip(params, grads, exp_avgs):
        if not (p.is_contiguous() and g.is_contiguous() and m.is_contiguous()):
            _loop([p], [-g if maximize else g], [m], lr, beta1, beta2, weight_decay)
            continue
        pf, gf, mf = p.view(-1), g.view(-1), m.view(-1)
        for s in range(0, pf.numel(), chunk):
            e = min(pf.numel(), s + chunk)
            gc = gf[s:e].neg() if maximize else gf[s:e]
            c = torch.lerp(mf[s:e], gc, 1 - beta1, out=buf[: e - s]).sign_()
            if weight_decay:
                pf[s:e].mul_(1 - lr * weight_decay)
            pf[s:e].add_(c, alpha=-lr)
            mf[s:e].lerp_(gc, 1 - beta2)


def _loop(params, grads, exp_avgs, lr, beta1, beta2, weight_decay) -> None:
    for p, g, m in zip(params, grads, exp_avgs):
        c = torch.lerp(m, g, 1 - beta1).sign_()
        if weight_decay:
            p.mul_(1 - lr * weight_decay)
        p.add_(c, alpha=-lr)
        m.lerp_(g, 1 - beta2)


@torch.no_grad()
def lion_update(
    params: list,
    grads: list,
    exp_avgs: list,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
    foreach: bool | None = True,
    chunk: int = CHUNK,
) -> None:
    """One Lion step, in place, on lists of tensors of one device and dtype. `foreach`: True, the
    foreach ops; False, the per-tensor reference loop; None, chunked on CPU and foreach
    elsewhere."""
    if not params:
        return
    if foreach is None:
        if params[0].device.type == "cpu":
            # tensors over a chunk: chunked (no large temporaries); the rest: foreach (the
            # per-tensor Python loop would cost more than a small model's whole update)
            large = [p.numel() > chunk for p in params]
            if any(large):

                def part(want: bool) -> list[list]:
                    lists = (params, grads, exp_avgs)
                    return [[x for x, big in zip(xs, large) if big == want] for xs in lists]

                _chunked(*part(True), lr, beta1, beta2, weight_decay, maximize, chunk)
                params, grads, exp_avgs = part(False)
                if not params:
                    return
        foreach = True
    if maximize:
        grads = torch._foreach_neg(grads) if foreach else [-g for g in grads]
    if foreach:
        c = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)  # beta1*m + (1-beta1)*g
        torch._foreach_sign_(c)
        if weight_decay:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        torch._foreach_add_(params, c, alpha=-lr)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta2)
        return
    _loop(params, grads, exp_avgs, lr, beta1, beta2, weight_decay)


class Lion(Optimizer):
    """Lion (Chen et al. 2023). `weight_decay` is decoupled: theta <- theta * (1 - lr * wd)."""

    def __init__(
        self,
        params,
        lr: float = 1e-4,
        betas=(0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ):
        beta1, beta2 = _check(lr, betas, weight_decay)
        defaults = dict(
            lr=lr,
            betas=(beta1, beta2),
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _init_group(self, group, params, grads, exp_avgs):
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs = [], [], []
            self._init_group(group, params, grads, exp_avgs)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            foreach = group["foreach"]  # None: chunked on CPU, foreach elsewhere
            kw = dict(
                lr=float(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                maximize=group["maximize"],
            )
            if foreach is False:
                lion_update(params, grads, exp_avgs, foreach=False, **kw)
                continue
            grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads, exp_avgs])
            for (ps, gs, ms), _ in grouped.values():
                lion_update(ps, gs, ms, foreach=foreach, **kw)
        return loss
