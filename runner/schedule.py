"""Learning-rate schedules as multipliers of the optimizer's lr, f(step) -> float, run by
torch's LambdaLR. Each config's `_target_` is a factory called with its keys plus `total_steps`.

`step` is the number of optimizer updates done before the update the multiplier applies to (0 for
the first); the `lr` logged in metrics.jsonl at step n is the one the next update will use, f(n).

- `constant`, `cosine`, `linear`: optional linear warm-up over `warmup_steps` (steps, or a
  fraction of the run in (0, 1)), then constant / cosine / linear decay to `min_ratio` at the
  last step.
- `piecewise`: the blog's `{step: multiplier}` form, linear between the points. Su Jianlin,
  "6个派生优化器的简单介绍及其实现", https://kexue.fm/archives/7094 (bert4keras
  `extend_with_piecewise_linear_lr`): e.g. {1000: 1, 2000: 0.1} warms up from 0 to 1 over the first
  1000 steps, decays linearly to 0.1 at step 2000 and stays there. As in bert4keras, a point
  (0, 0) is implied when the first point is not at step 0.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from runner.errors import ConfigError, in_range, positive


def warmup_length(warmup_steps, total_steps: int) -> int:
    """`warmup_steps` in optimizer steps: an integer >= 0 is a number of steps, a number in
    (0, 1) a fraction of the run (the model defaults' form, e.g. 0.06: known before the run's
    length is), rounded, at least one step."""
    if (
        isinstance(warmup_steps, float)
        and not isinstance(warmup_steps, bool)
        and 0 < warmup_steps < 1
    ):
        return max(1, round(warmup_steps * total_steps))
    if isinstance(warmup_steps, float) and warmup_steps == 0:
        return 0
    if isinstance(warmup_steps, float) and warmup_steps == warmup_steps and warmup_steps > 1:
        raise ConfigError(
            "schedule.warmup_steps",
            f"got {warmup_steps!r}",
            "an integer number of steps >= 0, or a fraction of the run in (0, 1), e.g. 0.06",
        )
    positive(warmup_steps, "schedule.warmup_steps", integer=True, allow_zero=True)
    return warmup_steps


def _warmup(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def constant(total_steps: int, warmup_steps: int = 0):
    w = _warmup(warmup_length(warmup_steps, total_steps))
    return lambda step: w(step)


def _decay(total_steps: int, warmup_steps: int, min_ratio: float, shape):
    """Warm-up, then min_ratio + (1 - min_ratio) * shape(t), t in [0, 1] over the rest."""
    warmup_steps = warmup_length(warmup_steps, total_steps)
    w = _warmup(warmup_steps)
    in_range(min_ratio, "schedule.min_ratio", 0.0, 1.0)

    def f(step):
        if step < warmup_steps:
            return w(step)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * shape(t)

    return f


def cosine(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
    return _decay(total_steps, warmup_steps, min_ratio, lambda t: 0.5 * (1 + math.cos(math.pi * t)))


def linear(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
    return _decay(total_steps, warmup_steps, min_ratio, lambda t: 1.0 - t)


def parse_points(points, key: str = "schedule.points") -> list[tuple[float, float]]:
    """{step: multiplier}, [[step, multiplier], ...] or '0:0,500:1,5000:0.1' -> sorted pairs."""
    if isinstance(points, str):
        try:
            points = [
                tuple(float(x) for x in item.split(":"))
                for item in points.split(",")
                if item.strip()
            ]
        except ValueError:
            points = None
    elif hasattr(points, "items"):
        points = list(points.items())
    ok = (
        isinstance(points, (list, tuple))
        and len(points) > 0
        and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points)
    )
    if not ok:
        raise ConfigError(
            key,
            f"must be {{step: multiplier}} pairs, e.g. {{1000: 1, 2000: 0.1}} "
            f"or '1000:1,2000:0.1', got {points!r}",
        )
    pairs = []
    for s, m in points:
        positive(s, f"{key} step", allow_zero=True)
        positive(m, f"{key}[{s}]", allow_zero=True)
        pairs.append((float(s), float(m)))
    pairs.sort()
    steps = [s for s, _ in pairs]
    if len(set(steps)) != len(steps):
        raise ConfigError(key, f"duplicate step in {points!r}")
    return pairs


def piecewise(total_steps: int, points=None, unit: str = "steps"):
    """Linear interpolation through `points`; constant after the last one."""
    if unit not in ("steps", "fraction"):
        raise ConfigError("schedule.unit", f"got {unit!r}", "steps, fraction")
    if points is None:
        raise ConfigError(
            "schedule.points",
            "missing: give {step: multiplier} pairs, e.g. schedule.points='1000:1,2000:0.1'",
        )
    pairs = parse_points(points)
    if unit == "fraction":
        if pairs[-1][0] > 1:
            raise ConfigError(
                "schedule.points",
                f"with schedule.unit=fraction the steps are "
                f"fractions of the run in [0, 1], got {pairs[-1][0]:g}; for "
                f"absolute steps set schedule.unit=steps",
            )
        pairs = [(s * total_steps, m) for s, m in pairs]
    if pairs[0][0] != 0:
        pairs.insert(0, (0.0, 0.0))
    xs = [s for s, _ in pairs]
    ys = [m for _, m in pairs]

    def f(step):
        i = bisect_right(xs, step) - 1
        if i >= len(xs) - 1:
            return ys[-1]
        t = (step - xs[i]) / (xs[i + 1] - xs[i])
        return ys[i] + (ys[i + 1] - ys[i]) * t

    return f
