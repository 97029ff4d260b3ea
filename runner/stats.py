"""The statistics behind every verdict: `tricks compare`, `tricks study`, `scripts/bench.py`.

- `describe`: n, mean, sample std, 95% CI of the mean (t distribution, n-1 dof), best.
- `compare_to`: the difference of a group to its baseline with a 95% CI and a two-sided p: a paired
  t-test when both ran the same distinct seeds (a seed fixes the data order and the initialisation,
  so pairing removes their variance), Welch's unequal-variance t-test otherwise; with the minimum
  detectable effect (`mde`) for that n and spread.
- `holm`: Holm's step-down adjustment of the p-values of the groups compared with one baseline
  (controls the family-wise error rate without assuming independence); `holm_verdicts` applies it
  and re-decides the verdicts on the adjusted p.
- `verdict`: better / worse / no significant difference; zero spread never yields a verdict from
  p = 0 alone (a constant difference on few seeds is not evidence of a reliable one).
- `performance_profile`: Dolan & Moré (2002), as AlgoPerf plots its submissions across workloads;
  `profile_bootstrap` resamples the seeds to show how much of a profile's order is seed noise.
"""

from __future__ import annotations

import math
from enum import Enum

ALPHA = 0.05


class Verdict(str, Enum):
    """A comparison's verdict, shared by `tricks compare` and `tricks study`.

    A str enum: it compares equal to its text and writes as that text to JSON, so a study.json
    or report written before the enum reads the same."""

    BETTER = "better"
    WORSE = "worse"
    NO_DIFF = "no significant difference"
    NO_SPREAD = "no spread: cannot test"
    TOO_FEW = "too few runs (need n >= 2)"

    __str__ = str.__str__  # f"{v}" is the text, on every Python version
    __format__ = str.__format__

    @property
    def decided(self) -> bool:
        """Better or worse: a difference the test detected."""
        return self in (Verdict.BETTER, Verdict.WORSE)


TOO_FEW = Verdict.TOO_FEW
NO_SPREAD = Verdict.NO_SPREAD
NO_DIFF = Verdict.NO_DIFF


def finite(x) -> bool:
    """A finite int or float (not a bool): a figure a table, a sum or a test can use."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def lower_is_better(metric: str) -> bool:
    m = metric.lower()
    return any(
        w in m for w in ("loss", "error", "err", "ppl", "perplexity", "wall", "mem", "seconds")
    )


def t_quantile(df: float, level: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def match_value(value: str, want: str) -> bool:
    """Whether a config value (as text) is the one asked for: equal text, equal numbers
    (`1e-3` == `0.001`), a list with or without brackets, or `none` for an empty list."""
    if value == want:
        return True
    try:
        return float(value) == float(want)
    except (TypeError, ValueError):
        return value.strip("[]") == want.strip("[]") or (
            want in ("none", "[]", "") and value in ("none", "[]")
        )


def describe(values: list[float], higher_better: bool = True) -> dict:
    """n, mean, std (n-1), 95% CI half-width (t, n-1 dof), ci low/high, best."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    half = t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    best = (max(values) if higher_better else min(values)) if n else float("nan")
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci95": half,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "best": best,
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest of m finite p's becomes
    max over j <= i of (m - j + 1) p_(j), capped at 1. NaN stays NaN and does not count in m."""
    idx = sorted((i for i, p in enumerate(pvalues) if finite(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def _welch_df(va: float, n: int, vb: float, nb: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the two variances of the means."""
    num = (va + vb) ** 2
    den = (va**2 / (n - 1) if va else 0.0) + (vb**2 / (nb - 1) if vb else 0.0)
    return num / den if den > 0 else float(n + nb - 2)


def _power(delta: float, se: float, df: float, alpha: float) -> float:
    from scipy import stats

    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    # the far tail through sf at -nc (symmetry): scipy's nct.cdf returns NaN out there
    far = float(stats.nct.sf(crit, df, -nc))
    return float(stats.nct.sf(crit, df, nc)) + (far if math.isfinite(far) else 0.0)


def mde(
    n: int,
    sd: float,
    paired: bool = True,
    n_base: int | None = None,
    sd_base: float | None = None,
    alpha: float = ALPHA,
    power: float = 0.8,
) -> float:
    """Minimum detectable difference: the true difference the two-sided t-test (paired: `sd` is
    the spread of the per-seed differences; else Welch with the baseline's n and spread) finds at
    level `alpha` with probability `power` (noncentral t). NaN when it cannot test (n < 2, a
    spread that is zero or unknown)."""
    from scipy.optimize import brentq

    if paired:
        if n < 2 or not finite(sd):
            return float("nan")
        se, df = sd / math.sqrt(n), n - 1
    else:
        if n < 2 or not n_base or n_base < 2 or not finite(sd) or not finite(sd_base):
            return float("nan")
        va, vb = sd**2 / n, sd_base**2 / n_base
        se, df = math.sqrt(va + vb), _welch_df(va, n, vb, n_base)
    if se <= 0:
        return float("nan")
    hi = 4 * se
    while _power(hi, se, df, alpha) < power:  # few dof: the effect can be many se
        hi *= 2
    return float(brentq(lambda d: _power(d, se, df, alpha) - power, 0.0, hi, xtol=1e-12 * se))


def verdict(diff: float, p: float, se: float, higher_better: bool, alpha: float = ALPHA) -> Verdict:
    """The verdict at level `alpha` from a difference, its (adjusted) p and its standard error."""
    if not finite(se) or not finite(diff):
        return TOO_FEW
    if se == 0:
        # every pair (or every run) equal: identical results are no difference; a constant
        # non-zero one has p = 0 by arithmetic, not by evidence
        return NO_DIFF if diff == 0 else NO_SPREAD
    if finite(p) and p < alpha and diff != 0:
        return Verdict.BETTER if (diff > 0) == higher_better else Verdict.WORSE
    return NO_DIFF


def _paired(values, seeds, base_values, base_seeds) -> bool:
    n, nb = len(values), len(base_values)
    return (
        n >= 2
        and None not in seeds
        and len(set(seeds)) == n
        and sorted(seeds, key=str) == sorted(base_seeds, key=str)
        and len(set(base_seeds)) == nb
    )


def compare_to(
    values: list[float],
    seeds: list,
    base_values: list[float],
    base_seeds: list,
    higher_better: bool = True,
    alpha: float = ALPHA,
) -> dict:
    """Difference (group - baseline): diff, its 95% CI (diff_low, diff_high), se, df, the
    two-sided p of `test` (paired t when both hold the same distinct seeds, else Welch t), the
    mde at 80% power, n, n_base and the (unadjusted) verdict."""
    from scipy import stats

    n, nb = len(values), len(base_values)
    nan = float("nan")
    out = {
        "diff": (sum(values) / n - sum(base_values) / nb) if n and nb else nan,
        "diff_low": nan,
        "diff_high": nan,
        "p": nan,
        "test": "",
        "se": nan,
        "df": nan,
        "mde": nan,
        "n": n,
        "n_base": nb,
        "verdict": TOO_FEW,
    }
    # a spread at the level of float rounding (equal differences computed from unequal values)
    # is no spread
    tiny = 1e-12 * max([abs(x) for x in [*values, *base_values]] + [1e-300])
    if _paired(values, seeds, base_values, base_seeds):
        b = dict(zip(base_seeds, base_values))
        d = describe([v - b[s] for v, s in zip(values, seeds)])
        mean, sd = d["mean"], d["std"]
        sd = sd if sd > tiny else 0.0
        se, df = sd / math.sqrt(n), n - 1
        out.update(diff=mean, test="paired t", mde=mde(n, sd, paired=True))
        if se > 0:
            out["p"] = float(stats.ttest_rel(values, [b[s] for s in seeds]).pvalue)
    elif n >= 2 and nb >= 2:
        sa, sb = describe(values)["std"], describe(base_values)["std"]
        sa, sb = (sa if sa > tiny else 0.0), (sb if sb > tiny else 0.0)
        va, vb = sa**2 / n, sb**2 / nb
        se, df = math.sqrt(va + vb), _welch_df(va, n, vb, nb)
        out.update(test="Welch t", mde=mde(n, sa, paired=False, n_base=nb, sd_base=sb))
        if se > 0:
            out["p"] = float(stats.ttest_ind(values, base_values, equal_var=False).pvalue)
    else:
        return out
    out.update(se=se, df=df)
    if se == 0:  # no spread: the difference is exact, and no test applies
        out["p"] = 1.0 if out["diff"] == 0 else nan
        out["diff_low"] = out["diff_high"] = out["diff"]
    else:
        h = t_quantile(df) * se
        out["diff_low"], out["diff_high"] = out["diff"] - h, out["diff"] + h
    out["verdict"] = verdict(out["diff"], out["p"], se, higher_better, alpha)
    return out


def holm_verdicts(
    results: list[dict], higher_better: bool = True, alpha: float = ALPHA
) -> list[dict]:
    """Sets `p_holm` (Holm across `results`, the comparisons with one baseline) in each
    `compare_to` result and re-decides its `verdict` on it; returns `results`."""
    for r, ph in zip(results, holm([r.get("p", float("nan")) for r in results])):
        r["p_holm"] = ph
        r["verdict"] = verdict(r["diff"], ph, r.get("se", float("nan")), higher_better, alpha)
    return results


def profile_ratios(
    scores: dict[str, dict[str, float]], higher_better: bool = True
) -> dict[str, list[float]]:
    """arm -> its ratio to the best arm on each workload of `scores` (workload -> arm -> score),
    >= 1: best/score (higher better) or score/best (lower better); inf for a missing or
    non-finite score (a failed arm) or a non-positive one."""
    arms = sorted({a for per in scores.values() for a in per})
    ratios: dict[str, list[float]] = {a: [] for a in arms}
    for per in scores.values():
        ok = {a: float(v) for a, v in per.items() if finite(v)}
        best = (max(ok.values()) if higher_better else min(ok.values())) if ok else None
        for a in arms:
            v = ok.get(a)
            if v is None:
                r = math.inf
            elif v == best:
                r = 1.0
            elif higher_better:
                r = best / v if v > 0 and best > 0 else math.inf
            else:
                r = v / best if best > 0 else math.inf
            ratios[a].append(r)
    return ratios


def performance_profile(
    scores: dict[str, dict[str, float]], taus: list[float], higher_better: bool = True
) -> dict[str, list[float]]:
    """Dolan-Moré performance profile. `scores`: workload -> arm -> score (positive, e.g. an
    accuracy, a loss, a time). An arm's profile at tau is the fraction of workloads on which its
    ratio to the best arm there (`profile_ratios`) is <= tau: a failed arm is never within any
    tau. Returns arm -> [fraction per tau]."""
    ratios, w = profile_ratios(scores, higher_better), len(scores)
    return {
        a: [sum(r <= t for r in rs) / w if w else float("nan") for t in taus]
        for a, rs in ratios.items()
    }


def profile_bootstrap(
    samples: dict[str, dict[str, dict]], higher_better: bool = True, reps: int = 1000, seed=0
) -> dict[str, list[list[float]]]:
    """How much of a performance profile is seed noise. `samples`: workload -> arm -> {seed:
    value} (an arm's confirmation runs). Each of `reps` resamples draws, on every workload, its
    seeds with replacement, the same draw for every arm (the runs are paired by seed), scores
    each arm by its mean over the drawn seeds it has, and takes the ratios to the best
    (`profile_ratios`; an arm with none of the drawn seeds counts as failed). Returns arm ->
    one list of per-workload ratios per resample; the fraction within tau of each resample
    gives the profile's percentile interval. Deterministic for a given `seed`."""
    import random

    rng = random.Random(seed)
    pools = {w: sorted({s for v in per.values() for s in v}, key=str) for w, per in samples.items()}
    out: dict[str, list[list[float]]] = {a: [] for per in samples.values() for a in per}
    for _ in range(reps):
        scores = {}
        for w, per in samples.items():
            drawn = [rng.choice(pools[w]) for _ in pools[w]] if pools[w] else []
            scores[w] = {}
            for a, v in per.items():
                xs = [v[s] for s in drawn if s in v and finite(v[s])]
                scores[w][a] = sum(xs) / len(xs) if xs else None
        for a, rs in profile_ratios(scores, higher_better).items():
            out[a].append(rs)
    return out


def mean_ci(values: list) -> tuple[float | None, float]:
    """(mean, half-width of its 95% t interval) over the finite values, as `describe` computes
    them; (None, NaN) for none, (mean, NaN) for one. The one mean-and-CI of compare, the study
    report and the recipes' analyses (runner.study.analysis_kit)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, float("nan")
    d = describe(values)
    return d["mean"], d["ci95"]
