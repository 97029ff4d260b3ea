"""Gradient clipping, applied once per optimizer step after gradient accumulation and AMP
unscaling (the engine's `on_grads` hook), so the threshold applies to the full-batch gradient.

- ``NormClip`` (``clip=norm``): g <- g * min(1, max_norm / ||g||), ||g|| the global L2 norm
  (torch ``clip_grad_norm_``). Pascanu, Mikolov, Bengio, "On the difficulty of training recurrent
  neural networks", ICML 2013, https://arxiv.org/abs/1211.5063.
- ``ValueClip`` (``clip=value``): every coordinate clamped to [-max_value, max_value]
  (torch ``clip_grad_value_``); changes the gradient's direction.
- ``AdaptiveClip`` (``clip=adaptive``): g <- g * gamma / (||g|| + gamma), gamma = ``max_norm``:
  a smooth version of norm clipping: the update's norm lr * gamma * ||g|| / (||g|| + gamma) stays
  below lr * gamma and is ~ lr * ||g|| for small gradients.
  Zhang, He, Sra, Jadbabaie, "Why gradient clipping accelerates training: a theoretical
  justification for adaptivity", ICLR 2020, https://arxiv.org/abs/1905.11881 ((L0, L1)-smoothness:
  where the gradient is large the loss is sharp, so the step should shrink with ||g||);
  Su Jianlin, "为什么梯度裁剪能加速训练过程？一个简明的分析", https://kexue.fm/archives/7469:
  under that condition the best step is 1 / (L0 + L1 ||g||), which gives this form (the post's
  second clipping form).

Logged on log steps: ``grad_norm`` (before clipping, the engine's contract key) and
``train/clip_factor`` (averaged over the log interval): the factor applied to g for the norm
forms, ||clipped g|| / ||g|| for value clipping. The norm forms reuse the norm the engine already
computed (``state.grad_norm()``, cached): no second pass over the gradients.
A huge threshold gives a factor of exactly 1 (tests/test_optim_clip.py).
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick


def norm_clip_factor(total_norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """min(1, max_norm / ||g||), as torch's clip_grads_with_norm_ computes it (1e-6 guard)."""
    return torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)


def adaptive_clip_factor(total_norm: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / (||g|| + gamma)."""
    return gamma / (total_norm + gamma)


def scale_grads(grads: list, factor: torch.Tensor) -> None:
    """g <- g * factor; a [K] factor (a stacked run) scales each member's slice [k]."""
    if not grads:
        return
    factor = factor.to(grads[0].device)
    if factor.dim():
        factor = [factor.view(-1, *([1] * (g.dim() - 1))) for g in grads]
    torch._foreach_mul_(grads, factor)


class _Clip(Trick):
    order = 90
    figures = ("train/clip_factor",)
    noop_exact = True  # a huge threshold (noop) changes no gradient: factor exactly 1
    passes = "1"
    stackable = True  # per member: the norm forms use state.grad_norm(), [K] in a stack


class _FactorClip(_Clip):
    """The norm forms: g <- g * factor(||g||, max_norm), one body for both."""

    noop = {"max_norm": 1e30}
    stack_keys = ("max_norm",)

    def __init__(self, max_norm: float = 1.0, order: int | None = None):
        super().__init__(order)
        positive(max_norm, "clip.max_norm")
        self.max_norm = float(max_norm)

    @staticmethod
    def factor(total_norm: torch.Tensor, max_norm: float) -> torch.Tensor:
        raise NotImplementedError

    def on_grads(self, state) -> None:
        norm = state.grad_norm()  # cached: shared with the engine's grad_norm metric
        factor = self.factor(norm, self.max_norm)
        scale_grads(state.grads(), factor)
        state.log_scalar("train/clip_factor", factor)


class NormClip(_FactorClip):
    factor = staticmethod(norm_clip_factor)  # torch's clip_grad_norm_ coefficient


class ValueClip(_Clip):
    noop = {"max_value": 1e30}

    def __init__(self, max_value: float = 0.1, order: int | None = None):
        super().__init__(order)
        positive(max_value, "clip.max_value")
        self.max_value = float(max_value)

    def on_grads(self, state) -> None:
        norm = state.grad_norm()
        torch.nn.utils.clip_grad_value_(state.params, self.max_value)
        after = state.norm(state.grads())
        state.log_scalar(
            "train/clip_factor", torch.where(norm > 0, after / norm.clamp_min(1e-30), 1.0)
        )


class AdaptiveClip(_FactorClip):
    factor = staticmethod(adaptive_clip_factor)
