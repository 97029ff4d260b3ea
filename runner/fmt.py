"""Numbers as both reports print them: `fnum` (4 decimals, thousands without), `fp` (p-values,
< 0.001), signed differences, ratios, memory, a mean with its CI's half-width. Used by
`tricks compare` (runner.compare) and the study report (runner.study.report) alike."""

from __future__ import annotations

import math

# -- formatting ------------------------------------------------------------------------------


def is_num(x) -> bool:
    """A finite int or float: a figure to print (else a dash)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def fnum(x, digits: int = 4) -> str:
    if not is_num(x):
        return "–"
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def fsigned(x, digits: int = 4) -> str:
    return f"{x:+.{digits}f}" if is_num(x) else "–"


def fp(p) -> str:
    if not is_num(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fratio(r) -> str:
    return f"{r:.2f}×" if is_num(r) else "–"


def fmem(b) -> str:
    return f"{b / 2**20:,.0f} MB" if is_num(b) and b > 0 else "–"


def fmean(mean, half) -> str:
    """`mean ± half` (a 95% CI's half-width), the mean alone when there is no interval."""
    return f"{fnum(mean)} ± {fnum(half)}" if is_num(half) else fnum(mean)
