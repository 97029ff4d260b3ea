"""Learning-rate schedules as multipliers of the optimizer's lr, f(step) -> float, run by
torch's LambdaLR. Each config's `_target_` is a factory called with its keys plus `total_steps`."""

from __future__ import annotations

import math

from runner.errors import in_range, positive


def _warmup(warmup_steps: int):
    positive(warmup_steps, "schedule.warmup_steps", integer=True, allow_zero=True)
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def constant(total_steps: int, warmup_steps: int = 0):
    w = _warmup(warmup_steps)
    return lambda step: w(step)


def cosine(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
    w = _warmup(warmup_steps)
    in_range(min_ratio, "schedule.min_ratio", 0.0, 1.0)

    def f(step):
        if step < warmup_steps:
            return w(step)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f
