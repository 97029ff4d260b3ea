"""Search spaces and the quasi-random trial points every arm shares.

A range is written `loguniform(a, b)`, `uniform(a, b)`, `int(a, b)`, `logint(a, b)` (integers,
both ends included; logint spaces them on a log scale, as Optuna's `suggest_int(log=True)`: an
integer k gets the mass log((k+1)/k), so 2..50 is not mostly above 20) or `choice(x, y, ...)`.
Points come from a scrambled Sobol sequence (scipy.stats.qmc, seeded): the first dimensions are
the shared `search` keys, so every arm is tuned at the SAME values of them; an arm's own
`arm_search` keys take the dimensions after those. With budget 1 the single trial is the centre
of every range (a lone scrambled point would be an arbitrary corner of the space).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import yaml

from runner.errors import ConfigError

FORMS = "loguniform(a, b), uniform(a, b), int(a, b), logint(a, b), choice(x, y, ...)"
_RANGE = re.compile(r"^\s*(loguniform|uniform|logint|int|choice)\s*\((.*)\)\s*$")
EDGE = 0.05  # a chosen value in the outer 5% of its range (log scale for log*) is flagged


@dataclass(frozen=True)
class Dim:
    key: str
    kind: str
    args: tuple
    text: str

    def value(self, u: float):
        """The value at u in [0, 1)."""
        u = min(max(u, 0.0), 1.0 - 1e-12)
        if self.kind == "choice":
            return self.args[int(u * len(self.args))]
        a, b = self.args
        if self.kind == "int":
            return int(a + min(int(u * (b - a + 1)), b - a))
        if self.kind == "logint":  # log-uniform on [a, b + 1), floored
            return min(int(math.exp(math.log(a) + u * (math.log(b + 1) - math.log(a)))), b)
        if self.kind == "loguniform":
            v = math.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        else:
            v = a + u * (b - a)
        return float(f"{v:.6g}")  # readable overrides and run dirs; far below any tuning grain

    def position(self, v) -> float | None:
        """Where v sits in the range, 0 (low end) to 1 (high end); None for a choice."""
        if self.kind == "choice":
            return None
        a, b = self.args
        if self.kind in ("loguniform", "logint"):
            return (math.log(v) - math.log(a)) / (math.log(b) - math.log(a))
        return (v - a) / (b - a)


def _number(s: str, key: str, text: str, integer: bool):
    try:
        v = yaml.safe_load(s)
    except Exception:
        v = None
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (integer and not isinstance(v, int))
    ):
        if isinstance(v, str):  # yaml reads 1e-4 as a string
            try:
                v = float(v)
            except ValueError:
                v = None
        if not isinstance(v, (int, float)) or isinstance(v, bool) or (integer and v != int(v)):
            raise ConfigError(
                key,
                f"malformed range {text!r}: {s.strip()!r} is not "
                f"{'an integer' if integer else 'a number'}",
                FORMS,
            )
    return int(v) if integer else float(v)


def _scalar(v):
    """yaml reads 1e6 (no dot) as a string: a choice of numbers stays numbers."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    return v


def parse(key: str, text, where: str) -> Dim:
    """One range; `where` is the study-file key that holds it (for the error line)."""
    name = f"{where}.{key}"
    m = _RANGE.match(str(text)) if isinstance(text, str) else None
    if not m:
        raise ConfigError(name, f"malformed range {text!r}", FORMS)
    kind, body = m.group(1), m.group(2)
    parts = [p for p in body.split(",")]
    if kind == "choice":
        vals = tuple(_scalar(yaml.safe_load(p)) if p.strip() else None for p in parts)
        if not body.strip() or None in vals:
            raise ConfigError(name, f"malformed range {text!r}: empty choice", FORMS)
        return Dim(key, kind, vals, text)
    if len(parts) != 2:
        raise ConfigError(name, f"malformed range {text!r}: needs two ends", FORMS)
    a, b = (_number(p, name, text, kind in ("int", "logint")) for p in parts)
    if not a < b:
        raise ConfigError(
            name, f"malformed range {text!r}: the low end must be below the high end", FORMS
        )
    if kind == "loguniform" and a <= 0:
        raise ConfigError(name, f"malformed range {text!r}: loguniform needs 0 < a < b", FORMS)
    if kind == "logint" and a < 1:
        raise ConfigError(name, f"malformed range {text!r}: logint needs 1 <= a < b", FORMS)
    return Dim(key, kind, (a, b), text)


def unit_points(budget: int, dims: int, seed: int) -> list[list[float]]:
    """`budget` points in [0, 1)^dims: scrambled Sobol (seeded); the centre when budget is 1."""
    if dims == 0:
        return [[] for _ in range(budget)]
    if budget == 1:
        return [[0.5] * dims]
    from scipy.stats import qmc  # the optional `report` extra: only a multi-trial budget

    with warnings.catch_warnings():  # a budget that is not a power of 2 is fine here
        warnings.simplefilter("ignore")
        return qmc.Sobol(d=dims, scramble=True, seed=seed).random(budget).tolist()


def trial_points(
    shared: list[Dim], own: dict[str, list[Dim]], budget: int, seed: int
) -> dict[str, list[dict]]:
    """arm -> its `budget` parameter dicts. Shared keys take the same values for every arm."""
    width = len(shared) + max((len(d) for d in own.values()), default=0)
    units = unit_points(budget, width, seed)
    out = {}
    for arm, dims in own.items():
        out[arm] = [
            {d.key: d.value(u[i]) for i, d in enumerate(shared)}
            | {d.key: d.value(u[len(shared) + j]) for j, d in enumerate(dims)}
            for u in units
        ]
    return out


def _ordered_position(d: Dim, v) -> float | None:
    """Where v sits among an ordered numeric choice's values (0 the smallest, 1 the largest):
    choice(32, 64, 128) at 128 is as much at the edge as a uniform range at its top. None for a
    choice of names (no order) and for a two-value choice, which is a switch between two
    settings (on/off), both of them ends by construction, not a range to widen."""
    nums = [x for x in d.args if isinstance(x, (int, float)) and not isinstance(x, bool)]
    values = sorted(set(nums))
    if len(nums) != len(d.args) or len(values) < 3 or v not in values:
        return None
    return values.index(v) / (len(values) - 1)


def edges(dims: list[Dim], chosen: dict) -> list[dict]:
    """The chosen values that sit in the outer EDGE of their range (or at an end of an ordered
    numeric choice): the best may lie outside; widen the range."""
    out = []
    for d in dims:
        if d.key not in chosen:
            continue
        v = chosen[d.key]
        pos = _ordered_position(d, v) if d.kind == "choice" else d.position(v)
        if pos is not None and (pos < EDGE or pos > 1 - EDGE):
            out.append(
                {
                    "key": d.key,
                    "value": chosen[d.key],
                    "range": d.text,
                    "side": "low" if pos < EDGE else "high",
                }
            )
    return out
