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
- `compare_replicated`: the verdict's test when each arm was tuned R times (replicates) and
  each replicate's choice confirmed on S paired seeds: a t-test on the R per-replicate mean
  differences, so its CI holds both levels of noise (the tuning's choice and split between
  replicates, the seeds within); the two variance components come with it. A typed, frozen
  `Comparison`. One replicate is today's seed-level test, flagged conditional on one tuning.
- `holm_families`: one Holm family per label (primary, controls, equal compute, arm vs arm) over
  a whole study; each comparison's MDE at the conservative level alpha / m of its family.
- `fill_failed`, `equal_compute_partner`, `with_edges`: a failed run counted worst, the
  equal-compute partner that is never weaker than the 1x baseline, edge-provisional verdicts.
- `performance_profile`: Dolan & Moré (2002), as AlgoPerf plots its submissions across workloads;
  `profile_bootstrap` resamples the seeds to show how much of a profile's order is seed noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    WITHHELD = "withheld: failed runs"

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
    from scipy import stats  # the report extra, ~0.5 s to import: only where a test is computed

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
    from scipy import stats  # the report extra, ~0.5 s to import: only where a test is computed

    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    # the far tail through sf at -nc (symmetry): scipy's nct.cdf returns NaN out there
    far = float(stats.nct.sf(crit, df, -nc))
    return float(stats.nct.sf(crit, df, nc)) + (far if math.isfinite(far) else 0.0)


@functools.lru_cache(maxsize=4096)
def _mde_factor(df: float, alpha: float, power: float) -> float:
    """The MDE in units of the standard error for the two-sided t with `df` dof: it depends on
    nothing else, so it is cached (a simulation asks for the same dof thousands of times)."""
    from scipy.optimize import brentq  # the report extra, ~0.5 s: only for an MDE

    hi = 4.0
    while _power(hi, 1.0, df, alpha) < power:  # few dof: the effect can be many se
        hi *= 2
    return float(brentq(lambda d: _power(d, 1.0, df, alpha) - power, 0.0, hi, xtol=1e-12))


def mde_se(se: float, df: float, alpha: float = ALPHA, power: float = 0.8) -> float:
    """The true difference a two-sided t-test with standard error `se` and `df` dof finds at
    level `alpha` with probability `power` (noncentral t). NaN where it cannot test."""
    if not finite(se) or not finite(df) or se <= 0 or df <= 0:
        return float("nan")
    return se * _mde_factor(float(df), float(alpha), float(power))


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
    if paired:
        if n < 2 or not finite(sd):
            return float("nan")
        se, df = sd / math.sqrt(n), n - 1
    else:
        if n < 2 or not n_base or n_base < 2 or not finite(sd) or not finite(sd_base):
            return float("nan")
        va, vb = sd**2 / n, sd_base**2 / n_base
        se, df = math.sqrt(va + vb), _welch_df(va, n, vb, n_base)
    return mde_se(se, df, alpha, power)


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
    from scipy import stats  # the report extra, ~0.5 s to import: only where a test is computed

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


# -- replicated tuning: the verdict's test, its families, failures, edges --------------------


class Family(str, Enum):
    """A Holm family of a study: each is adjusted on its own and never dilutes another."""

    PRIMARY = "primary"  # every trick vs its baseline, across all the study's workloads
    CONTROLS = "controls"  # declared null controls and the A/A arm: calibration, not findings
    EQUAL_COMPUTE = "equal compute"  # each costly arm vs the baseline given its compute
    VERSUS = "arm vs arm"  # the study file's `compare:` pairs

    __str__ = str.__str__
    __format__ = str.__format__


ONE_TUNING = "conditional on one tuning"

_FLOATS = ("diff", "ci_low", "ci_high", "se", "df", "p", "p_holm", "mde", "alpha_mde")
_FLOATS += ("var_between", "var_within")


@dataclass(frozen=True)
class Comparison:
    """An arm against its partner (the baseline), from R replicates x S paired seeds.

    `diff` (arm - partner) with its 95% CI [ci_low, ci_high], `se`, `df` and two-sided `p`;
    `p_holm` once `holm_families` has adjusted it in its `family` (of `family_size` tests).
    `var_between`: the variance of the difference between replicates beyond what the seeds
    explain (the tuning's choice, the split); `var_within`: the variance of a per-seed
    difference inside one replicate; NaN where not estimable (one replicate: between is
    unknown). `mde`: the true difference the test detects with 80% power at level `alpha_mde`
    (alpha over the family's size after `holm_families`). `failed` of `runs` confirmation runs
    failed (counted worst, or the verdict withheld). `conditional`: one replicate, so the
    verdict holds for this one tuning only. `provisional`: why the verdict may move with a
    wider range (a chosen value on an edge)."""

    label: str = ""
    family: Family = Family.PRIMARY
    test: str = ""
    diff: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    se: float = math.nan
    df: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    family_size: int = 1
    mde: float = math.nan
    alpha_mde: float = ALPHA
    replicates: int = 0
    pairs: int = 0  # paired (arm, partner) runs the difference is estimated from
    var_between: float = math.nan
    var_within: float = math.nan
    failed: int = 0
    runs: int = 0
    higher_better: bool = True
    conditional: bool = False
    provisional: tuple[str, ...] = ()
    replicate_diffs: tuple[float, ...] = ()  # each replicate's mean difference (R >= 2)
    verdict: Verdict = Verdict.TOO_FEW

    def __post_init__(self):
        # text from JSON or a caller becomes the enums (a str enum hashes by its name, so
        # "primary" and Family.PRIMARY would otherwise be two families)
        object.__setattr__(self, "family", Family(self.family))
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        object.__setattr__(self, "provisional", tuple(self.provisional))
        object.__setattr__(self, "replicate_diffs", tuple(self.replicate_diffs))

    @property
    def headline(self) -> str:
        """The verdict with what qualifies it: 'better (provisional: optimizer.lr at its range's
        floor)', 'worse (conditional on one tuning)', 'withheld: failed runs (2/20 runs
        failed)'."""
        notes = []
        if self.provisional:
            notes.append("provisional: " + "; ".join(self.provisional))
        if self.conditional:
            notes.append(ONE_TUNING)
        if self.failed:
            notes.append(f"{self.failed}/{self.runs} runs failed")
        return f"{self.verdict}" + (f" ({'; '.join(notes)})" if notes else "")

    @property
    def between_share(self) -> float:
        """The share of the replicate mean's variance that is the tuning's (between replicates):
        var_between / (var_between + var_within / S), S the seeds per replicate."""
        if not (finite(self.var_between) and finite(self.var_within)) or not self.replicates:
            return math.nan
        total = self.var_between + self.var_within * self.replicates / max(self.pairs, 1)
        return self.var_between / total if total > 0 else math.nan

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(family=str(self.family), verdict=str(self.verdict))
        d["provisional"] = list(self.provisional)
        d["replicate_diffs"] = list(self.replicate_diffs)
        return {k: (None if isinstance(v, float) and not finite(v) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: Mapping) -> Comparison:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw.update({k: math.nan for k in _FLOATS if kw.get(k) is None})
        return cls(**kw)


def _failed(v) -> bool:
    try:
        return not math.isfinite(v)
    except TypeError:  # None: the run left no value
        return True


def _var(xs: Sequence[float]) -> float:
    """The sample variance (n - 1): plain floats, faster than numpy on a replicate's few seeds."""
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def fill_failed(
    arm: Sequence[Mapping], base: Sequence[Mapping], higher_better: bool = True, worst=None
) -> tuple[list[dict], list[dict], int, int]:
    """A failed confirmation run (None or a non-finite value) counted as the worst value of the
    metric, never dropped: dropping it would keep only the runs that survived, a selection in
    the arm's favour. `arm`, `base`: per replicate, seed -> value. `worst`: the metric's worst
    value (e.g. 0 for an accuracy); by default the worst completed value of the comparison (both
    sides, every replicate), which keeps the t finite and ranks the failure last. Returns
    (arm, base) filled, and k failed of n runs."""
    runs = [v for side in (arm, base) for rep in side for v in rep.values()]
    k = sum(_failed(v) for v in runs)
    if worst is None:
        ok = [float(v) for v in runs if not _failed(v)]
        worst = (min(ok) if higher_better else max(ok)) if ok else math.nan
    fill = [
        [{s: (float(worst) if _failed(v) else float(v)) for s, v in rep.items()} for rep in side]
        for side in (arm, base)
    ]
    return fill[0], fill[1], k, len(runs)


def _pair_diffs(arm: Sequence[Mapping], base: Sequence[Mapping]) -> list[list[float]]:
    """Per replicate, the (arm - base) differences on the seeds both completed, in seed order."""
    out = []
    for a, b in zip(arm, base):
        both = sorted((s for s in a if s in b and not (_failed(a[s]) or _failed(b[s]))), key=str)
        out.append([float(a[s]) - float(b[s]) for s in both])
    return out


def _components(diffs: list[list[float]]) -> tuple[float, float]:
    """(between, within) variance of the difference, by one-way ANOVA (method of moments):
    within pooled over replicates with >= 2 seeds; between = var(replicate means) - within x
    mean(1 / S_r), truncated at 0 (the usual moment estimate; unbiased for balanced data)."""
    many = [d for d in diffs if len(d) > 1]
    dof = sum(len(d) - 1 for d in many)
    within = sum(_var(d) * (len(d) - 1) for d in many) / dof if dof else math.nan
    if len(diffs) < 2 or not finite(within):
        return math.nan, within
    vm = _var([sum(d) / len(d) for d in diffs])
    return max(0.0, vm - within * sum(1 / len(d) for d in diffs) / len(diffs)), within


def compare_replicated(
    arm: Sequence[Mapping],
    base: Sequence[Mapping],
    higher_better: bool = True,
    alpha: float = ALPHA,
    *,
    failed: str = "worst",
    worst=None,
    label: str = "",
    family: Family = Family.PRIMARY,
) -> Comparison:
    """An arm against its partner from R replicates of the tuning, each confirmed on paired
    seeds. `arm`, `base`: one mapping seed -> value per replicate, replicate r of one paired
    with replicate r of the other (same scramble, tune seeds, split, confirmation seeds); a
    value None (or NaN) is a failed run. `failed`: "worst" counts it as `worst` (fill_failed),
    "withhold" withholds the verdict (figures from the completed pairs).

    R >= 2: a t-test on the R per-replicate mean differences (R - 1 dof). Each replicate mean
    varies by the tuning's choice and split (between) plus its seeds' noise (within / S), and
    the replicate means are independent, so their spread estimates exactly the variance the
    verdict needs: the CI holds both levels of noise (exact under normal errors for equal S).
    R = 1: today's seed-level test (compare_to: paired t, Welch when the seeds differ), flagged
    `conditional` on that one tuning."""
    if len(arm) != len(base) or not arm:
        raise ValueError(f"replicates must pair: {len(arm)} vs {len(base)} (need >= 1)")
    if failed not in ("worst", "withhold"):
        raise ValueError(f"failed={failed!r}: allowed worst, withhold")
    fa, fb, k, n = fill_failed(arm, base, higher_better, worst)
    if failed == "withhold":
        fa, fb = arm, base
    common = dict(label=label, family=Family(family), failed=k, runs=n)
    common.update(higher_better=higher_better, replicates=len(arm), alpha_mde=alpha)
    diffs = _pair_diffs(fa, fb)
    if len(arm) == 1:
        c = _one_tuning(fa[0], fb[0], higher_better, alpha, common)
    else:
        c = _replicate_t(diffs, higher_better, alpha, common)
    return dataclasses.replace(c, verdict=Verdict.WITHHELD) if k and failed == "withhold" else c


def _one_tuning(a: Mapping, b: Mapping, higher_better, alpha, common: dict) -> Comparison:
    """R = 1: compare_to on the one replicate's runs (the seed-level test, numbers unchanged)."""
    av = [(s, float(v)) for s, v in a.items() if not _failed(v)]
    bv = [(s, float(v)) for s, v in b.items() if not _failed(v)]
    r = compare_to(
        [v for _, v in av],
        [s for s, _ in av],
        [v for _, v in bv],
        [s for s, _ in bv],
        higher_better,
        alpha,
    )
    d = _pair_diffs([a], [b])[0]
    within = _var(d) if r["test"] == "paired t" and len(d) > 1 else math.nan
    return Comparison(
        **common,
        test=r["test"],
        diff=r["diff"],
        ci_low=r["diff_low"],
        ci_high=r["diff_high"],
        se=r["se"],
        df=r["df"],
        p=r["p"],
        mde=mde_se(r["se"], r["df"], alpha),
        pairs=len(d) if r["test"] == "paired t" else min(len(av), len(bv)),
        var_within=within,
        conditional=True,
        verdict=r["verdict"],
    )


def _replicate_t(diffs: list[list[float]], higher_better, alpha, common: dict) -> Comparison:
    """R >= 2: the t-test on the replicate means (replicates with no completed pair drop out)."""
    from scipy import special  # scipy costs ~0.5 s to import: only where a test is computed

    diffs = [d for d in diffs if d]
    means = [sum(d) / len(d) for d in diffs]
    r, pairs = len(means), sum(len(d) for d in diffs)
    between, within = _components(diffs) if r else (math.nan, math.nan)
    out = dict(common, test="replicate t", pairs=pairs, var_between=between, var_within=within)
    out["replicate_diffs"] = tuple(means)
    if r < 2:
        return Comparison(**out, diff=means[0] if means else math.nan, verdict=Verdict.TOO_FEW)
    diff, sd = sum(means) / r, math.sqrt(_var(means))
    tiny = 1e-12 * max(abs(x) for d in diffs for x in [*d, 1e-300])
    se, df = (sd if sd > tiny else 0.0) / math.sqrt(r), r - 1
    if se > 0:  # scipy.special's t cdf and quantile: the same numbers, 50x faster than stats.t
        p = float(2 * special.stdtr(df, -abs(diff) / se))
        h = float(special.stdtrit(df, 0.975)) * se
    else:  # no spread: the difference is exact, and no test applies
        p, h = (1.0 if diff == 0 else math.nan), 0.0
    return Comparison(
        **out,
        diff=diff,
        ci_low=diff - h,
        ci_high=diff + h,
        se=se,
        df=df,
        p=p,
        mde=mde_se(se, df, alpha),
        verdict=verdict(diff, p, se, higher_better, alpha),
    )


def mde_replicated(
    var_between: float,
    var_within: float,
    replicates: int,
    seeds: int,
    alpha: float = ALPHA,
    power: float = 0.8,
) -> float:
    """The MDE of `compare_replicated` planned from the two variance components: the replicate
    mean's variance is var_between + var_within / seeds, over `replicates` of them (R - 1 dof).
    One replicate: the seed-level test's MDE (var_within / seeds, seeds - 1 dof), which is
    conditional on that tuning (it ignores var_between)."""
    if replicates < 1 or seeds < 1:
        return math.nan
    if replicates == 1:
        return mde_se(math.sqrt(var_within / seeds), seeds - 1, alpha, power)
    se = math.sqrt((var_between + var_within / seeds) / replicates)
    return mde_se(se, replicates - 1, alpha, power)


def holm_families(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm within each `family` of a study's comparisons (all workloads together), never
    across: each gets `p_holm`, `family_size` (the family's m: its comparisons with a finite p)
    and its verdict re-decided on `p_holm` (a withheld one stays withheld). The MDE is re-stated
    at alpha / m, the conservative level: Holm rejects every p <= alpha / m whatever the other
    p's are, so an effect of that size is detected with >= 80% power in the family; the level
    at a comparison's own step (alpha / (m - rank + 1)) depends on the other comparisons' luck
    and would promise power the family does not give. Returns new comparisons, input order."""
    out = list(comparisons)
    for fam in dict.fromkeys(c.family for c in comparisons):
        idx = [i for i, c in enumerate(comparisons) if c.family == fam]
        adj = holm([comparisons[i].p for i in idx])
        m = max(1, sum(finite(comparisons[i].p) for i in idx))
        for i, ph in zip(idx, adj):
            c = comparisons[i]
            v = c.verdict
            if v != Verdict.WITHHELD:
                v = verdict(c.diff, ph, c.se, c.higher_better, alpha)
            out[i] = dataclasses.replace(
                c,
                p_holm=ph,
                family_size=m,
                alpha_mde=alpha / m,
                mde=mde_se(c.se, c.df, alpha / m),
                verdict=v,
            )
    return out


_SIDE = {"low": "floor", "high": "ceiling"}


def with_edges(c: Comparison, edges: Sequence[Mapping], whose: str = "") -> Comparison:
    """The comparison made provisional by each chosen value on an edge of its range
    (runner.study.space.edges records: key, side), e.g. "optimizer.lr at its range's floor";
    `whose` prefixes the arm it belongs to ("baseline's "). Repeats (the same key and side in
    several replicates) count once; earlier reasons are kept."""
    reasons = list(c.provisional)
    for e in edges:
        why = f"{whose}{e['key']} at its range's {_SIDE.get(e.get('side'), 'edge')}"
        if why not in reasons:
            reasons.append(why)
    return dataclasses.replace(c, provisional=tuple(reasons))


def equal_compute_partner(val_1x, val_longer, higher_better: bool = True) -> str:
    """Which baseline a costly arm is compared with at equal compute: "longer" (the baseline
    trained the arm's measured compute) only where it scored better on validation than the 1x
    baseline; else "1x". A longer baseline that tuned worse would make the arm look better at
    equal compute than against the plain baseline. A tie or a failed longer run goes to the 1x
    (the cheaper); a failed 1x to the longer."""
    if _failed(val_longer):
        return "1x"
    if _failed(val_1x):
        return "longer"
    better = val_longer > val_1x if higher_better else val_longer < val_1x
    return "longer" if better else "1x"


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
