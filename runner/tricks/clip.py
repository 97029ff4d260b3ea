"""Gradient clipping, applied after gradient accumulation and AMP unscaling.

- ``NormClip``: g <- g · min(1, max_norm/‖g‖), ‖g‖ the global L2 norm (torch ``clip_grad_norm_``).

Logged on log steps: ``grad_norm`` (before clipping, the engine's contract key) and
``train/clip_factor`` (the factor applied).
Uses torch's ``clip_grads_with_norm_`` with the norm the engine already computed (no second pass).
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick


def norm_clip_factor(total_norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    return torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)


class NormClip(Trick):
    order = 90

    def __init__(self, max_norm: float = 1.0, order: int | None = None):
        super().__init__(order)
        positive(max_norm, "clip.max_norm")
        self.max_norm = float(max_norm)

    def on_grads(self, state) -> None:
        norm = state.grad_norm()  # cached: shared with the engine's grad_norm metric
        factor = norm_clip_factor(norm, self.max_norm)
        torch.nn.utils.clip_grads_with_norm_(state.params, self.max_norm, norm)
        state.log_scalar("train/clip_factor", factor)
