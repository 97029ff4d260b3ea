"""runner/stats.py against hand computations and scipy: Holm, paired vs Welch, the MDE (the power
of the test at the returned effect, from the noncentral t and by simulation), zero spread, and
the Dolan-Moré performance profile."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps

from runner import stats


def test_holm_against_a_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN stays NaN and is not counted in m (m = 3): 0.02*3 = 0.06, 0.5*2 -> capped at 1,
    # 0.6*1 = 0.6 -> monotone: 1
    out = stats.holm([0.6, float("nan"), 0.02, 0.5])
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([1.0, 0.06, 1.0])
    assert stats.holm([]) == []
    assert stats.holm([0.3]) == [0.3]


def test_holm_is_monotone_and_never_below_raw_p():
    rng = random.Random(0)
    for _ in range(50):
        p = [rng.random() ** 3 for _ in range(rng.randint(1, 9))]
        adj = stats.holm(p)
        order = sorted(range(len(p)), key=lambda i: p[i])
        assert all(adj[i] >= p[i] and adj[i] <= 1 for i in range(len(p)))
        assert all(adj[order[j]] <= adj[order[j + 1]] for j in range(len(p) - 1))


A = [0.80, 0.82, 0.81, 0.79, 0.83]
C = [0.81, 0.84, 0.82, 0.80, 0.85]


def test_paired_when_seeds_match_else_welch_against_scipy():
    r = stats.compare_to(C, [0, 1, 2, 3, 4], A, [4, 3, 2, 1, 0][::-1])
    assert r["test"] == "paired t"
    assert r["p"] == pytest.approx(sps.ttest_rel(C, A).pvalue, rel=1e-12)
    d = [c - a for c, a in zip(C, A)]
    assert r["diff"] == pytest.approx(sum(d) / 5)
    assert r["se"] == pytest.approx(np_sd(d) / math.sqrt(5))
    assert r["df"] == 4 and r["n"] == 5 and r["n_base"] == 5
    assert r["diff_high"] - r["diff"] == pytest.approx(sps.t.ppf(0.975, 4) * r["se"])
    assert r["verdict"] == "better"
    # the pairs follow the seeds, not the list order
    shuffled = stats.compare_to(C[::-1], [4, 3, 2, 1, 0], A, [0, 1, 2, 3, 4])
    assert shuffled["p"] == pytest.approx(r["p"], rel=1e-12)
    # one seed missing (a failed run): Welch, as scipy computes it
    w = stats.compare_to(C[:4], [0, 1, 2, 3], A, [0, 1, 2, 3, 4])
    ref = sps.ttest_ind(C[:4], A, equal_var=False)
    assert w["test"] == "Welch t"
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (w["diff"]) / w["se"] == pytest.approx(ref.statistic, rel=1e-12)
    va, vb = np_sd(C[:4]) ** 2 / 4, np_sd(A) ** 2 / 5
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 4))
    # lower is better flips the direction
    assert (
        stats.compare_to(C, list(range(5)), A, list(range(5)), higher_better=False)["verdict"]
        == "worse"
    )


def np_sd(x):
    m = sum(x) / len(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


def test_too_few_runs():
    r = stats.compare_to([0.9], [0], A, list(range(5)))
    assert r["verdict"] == stats.TOO_FEW and math.isnan(r["p"]) and math.isnan(r["mde"])


@pytest.mark.parametrize("n,sd", [(2, 1.0), (5, 0.01), (12, 3.0)])
def test_mde_paired_gives_80_percent_power(n, sd):
    d = stats.mde(n, sd)
    se, df = sd / math.sqrt(n), n - 1
    crit = sps.t.ppf(0.975, df)
    power = sps.nct.sf(crit, df, d / se) + sps.nct.sf(crit, df, -d / se)
    assert power == pytest.approx(0.8, abs=1e-6)
    # the usual approximation (t_{1-a/2} + t_{power}) se is close at moderate n
    if n >= 5:
        assert d == pytest.approx((crit + sps.t.ppf(0.8, df)) * se, rel=0.03)


def test_mde_by_simulation():
    """The paired t-test at level 0.05 detects a true difference equal to the MDE ~80% of the
    time (20000 simulated 6-seed experiments; binomial sd of the rate ~0.003)."""
    import numpy as np

    n, sd = 6, 0.02
    d = stats.mde(n, sd)
    x = np.random.default_rng(1).normal(d, sd, size=(20000, n))
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
    rate = float(np.mean(2 * sps.t.sf(np.abs(t), n - 1) < 0.05))
    assert abs(rate - 0.8) < 0.012


def test_mde_welch_and_undefined_cases():
    d = stats.mde(5, 1.0, paired=False, n_base=7, sd_base=2.0)
    va, vb = 1 / 5, 4 / 7
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 6)
    crit = sps.t.ppf(0.975, df)
    power = sps.nct.sf(crit, df, d / se) + sps.nct.sf(crit, df, -d / se)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.mde(5, 1.0, power=0.9) > stats.mde(5, 1.0) > stats.mde(20, 1.0)
    for bad in (
        stats.mde(1, 1.0),
        stats.mde(5, 0.0),
        stats.mde(5, float("nan")),
        stats.mde(5, 1.0, paired=False, n_base=1, sd_base=1.0),
    ):
        assert math.isnan(bad)


def test_zero_spread_gives_no_verdict():
    base = [0.5, 0.6, 0.7]
    # a constant +0.1 on every seed: p would be 0, but there is nothing to test
    r = stats.compare_to([0.6, 0.7, 0.8], [0, 1, 2], base, [0, 1, 2])
    assert r["verdict"] == stats.NO_SPREAD and math.isnan(r["p"])
    assert r["diff"] == pytest.approx(0.1)
    # identical runs: no difference at all
    r = stats.compare_to(base, [0, 1, 2], base, [0, 1, 2])
    assert r["verdict"] == stats.NO_DIFF and r["p"] == 1.0
    # Welch with both groups constant
    r = stats.compare_to([0.9, 0.9], [5, 6], [0.5, 0.5, 0.5], [0, 1, 2])
    assert r["test"] == "Welch t" and r["verdict"] == stats.NO_SPREAD
    # and the verdict function itself
    assert stats.verdict(0.1, 0.0, 0.0, True) == stats.NO_SPREAD
    assert stats.verdict(0.1, 0.01, float("nan"), True) == stats.TOO_FEW
    assert stats.verdict(-0.1, 0.01, 0.02, True) == "worse"
    assert stats.verdict(0.1, 0.06, 0.02, True) == stats.NO_DIFF


def test_holm_verdicts_decide_on_the_adjusted_p():
    rs = [
        {"diff": 0.1, "p": 0.02, "se": 0.03},
        {"diff": 0.1, "p": 0.04, "se": 0.03},
        {"diff": -0.1, "p": 0.001, "se": 0.03},
    ]
    stats.holm_verdicts(rs)
    assert [r["p_holm"] for r in rs] == pytest.approx([0.04, 0.04, 0.003])
    assert [r["verdict"] for r in rs] == ["better", "better", "worse"]
    rs = [
        {"diff": 0.1, "p": 0.03, "se": 0.03},
        {"diff": 0.1, "p": 0.04, "se": 0.03},
        {"diff": 0.1, "p": 0.5, "se": 0.03},
    ]
    stats.holm_verdicts(rs)  # raw p < 0.05 twice, but 3 x 0.03 = 0.09
    assert [r["verdict"] for r in rs] == [stats.NO_DIFF] * 3


def test_performance_profile_on_a_hand_example():
    scores = {
        "w1": {"a": 0.90, "b": 0.81, "c": 0.60},
        "w2": {"a": 0.70, "b": 0.77, "c": float("nan")},  # c failed on w2
        "w3": {"a": 0.50, "b": 0.50},
    }  # c did not run
    # ratios best/score: a: 1, 1.1, 1; b: 0.9/0.81 = 1.111.., 1, 1; c: 1.5, inf, inf
    prof = stats.performance_profile(scores, [1.0, 1.1, 1.12, 1.5, 10])
    assert prof["a"] == pytest.approx([2 / 3, 1, 1, 1, 1])
    assert prof["b"] == pytest.approx([2 / 3, 2 / 3, 1, 1, 1])
    assert prof["c"] == pytest.approx([0, 0, 0, 1 / 3, 1 / 3])
    # lower is better: score / best
    low = stats.performance_profile(
        {"w1": {"a": 1.0, "b": 2.0}, "w2": {"a": 3.0, "b": 2.0}},
        [1.0, 1.5, 2.0],
        higher_better=False,
    )
    assert low == {"a": [0.5, 1.0, 1.0], "b": [0.5, 0.5, 1.0]}


def test_profile_bootstrap_pairs_by_seed_and_shows_seed_noise():
    import random

    rng = random.Random(1)
    seeds = list(range(8))
    # a beats b by 0.01 on every seed, under a seed-to-seed spread of +-0.1: paired resamples
    # keep a ahead every time (unpaired ones would not); c and d: the same distribution
    w = {}
    for k in range(4):
        base = {s: 0.6 + rng.uniform(-0.1, 0.1) for s in seeds}
        w[f"w{k}"] = {
            "a": {s: v + 0.01 for s, v in base.items()},
            "b": dict(base),
        }
    boot = stats.profile_bootstrap(w, reps=300)
    assert len(boot["a"]) == 300 and all(len(r) == 4 for r in boot["a"])
    assert all(r == [1.0] * 4 for r in boot["a"])  # best on every workload in every resample
    assert all(all(x > 1 for x in r) for r in boot["b"])
    assert boot == stats.profile_bootstrap(w, reps=300)  # deterministic for a seed
    noisy = {
        f"w{k}": {
            "c": {s: rng.gauss(0.6, 0.05) for s in seeds},
            "d": {s: rng.gauss(0.6, 0.05) for s in seeds},
        }
        for k in range(4)
    }
    wins = [sum(x == 1.0 for x in r) for r in stats.profile_bootstrap(noisy, reps=300)["c"]]
    assert min(wins) <= 1 and max(wins) >= 3  # the order of equals moves with the seeds
    # one seed each: every resample is the point profile's ratios; a missing seed: failed
    one = {"w0": {"a": {0: 0.8}, "b": {0: 0.4}}, "w1": {"a": {0: 0.5}, "b": {}}}
    point = stats.profile_ratios({"w0": {"a": 0.8, "b": 0.4}, "w1": {"a": 0.5, "b": None}})
    assert point == {"a": [1.0, 1.0], "b": [2.0, math.inf]}
    assert stats.profile_bootstrap(one, reps=5) == {a: [r] * 5 for a, r in point.items()}


def test_describe_and_match_value():
    d = stats.describe([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["std"] == 1.0 and d["best"] == 3.0
    assert d["ci95"] == pytest.approx(sps.t.ppf(0.975, 2) / math.sqrt(3))
    assert stats.describe([1.0, 2.0], higher_better=False)["best"] == 1.0
    assert stats.match_value("0.001", "1e-3") and stats.match_value("[fgm]", "fgm")
    assert stats.match_value("[]", "none") and not stats.match_value("adamw", "sgd")
    assert stats.lower_is_better("val/loss") and not stats.lower_is_better("test/acc")
