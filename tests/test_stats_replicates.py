"""The verdict's test with replicated tuning (runner.stats.compare_replicated and its family),
checked against simulated studies with a known between-replicate variance and against hand
computations. A simulated study: R replicates, each an arm's and the baseline's runs on S paired
seeds; the arm's true effect is mu, each replicate adds its own tuning/split offset b_r ~ N(0,
tau^2) and each seed its noise e ~ N(0, sigma^2)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from runner import stats
from runner.stats import Comparison, Family, Verdict

TAU, SIGMA = 1.0, 1.0  # between-replicate and within-replicate sd of the difference


def studies(n, mu, r, s, tau=TAU, sigma=SIGMA, seed=0):
    """n simulated studies: (arm, base) per study, each a list of r {seed: value} dicts."""
    rng = np.random.default_rng(seed)
    base = 0.7 + 0.05 * rng.standard_normal((n, r, s))
    arm = base + mu + tau * rng.standard_normal((n, r, 1)) + sigma * rng.standard_normal((n, r, s))
    seeds = [100 + j for j in range(s)]

    def reps(x):
        return [dict(zip(seeds, row.tolist())) for row in x]

    return [(reps(a), reps(b)) for a, b in zip(arm, base)]


def test_replicate_ci_covers_where_the_seed_only_ci_does_not():
    """The 95% CI of the replicate-level test covers the true effect in 93-97% of 2,000
    studies with a between-replicate sd equal to the seeds' sd; the seed-only CI (every run
    treated as a seed of one tuning: today's test) covers far less in the same studies, and one
    tuning's seed-level CI (today's study: R = 1) less still."""
    mu, r, s = 0.3, 5, 4
    sims = studies(2000, mu, r, s, seed=1)
    cs = [stats.compare_replicated(a, b) for a, b in sims]
    cover = np.mean([c.ci_low <= mu <= c.ci_high for c in cs])
    assert 0.93 <= cover <= 0.97, cover
    assert all(c.test == "replicate t" and c.df == r - 1 and not c.conditional for c in cs)
    # the seed-only CI on the same runs: all R x S differences as one paired t
    d = np.array([[a[i][k] - b[i][k] for i in range(r) for k in a[i]] for a, b in sims])
    half = sps.t.ppf(0.975, r * s - 1) * d.std(1, ddof=1) / math.sqrt(r * s)
    seed_only = np.mean(np.abs(d.mean(1) - mu) <= half)
    assert seed_only < 0.85, seed_only  # ~0.78 here
    # one tuning, 10 seeds: the CI is of that tuning's effect mu + b_1, not of mu
    one = [stats.compare_replicated(a, b) for a, b in studies(300, mu, 1, 10, seed=2)]
    assert np.mean([c.ci_low <= mu <= c.ci_high for c in one]) < 0.6  # ~0.45
    assert all(c.conditional and c.test == "paired t" for c in one)


def test_false_positive_rate_under_the_null_and_the_variance_components():
    """No true effect, a between-replicate sd as large as the seeds': a verdict ("better" or
    "worse") in 5% of 3,000 studies; the two components recovered on average."""
    r, s = 3, 5
    cs = [stats.compare_replicated(a, b) for a, b in studies(3000, 0.0, r, s, seed=3)]
    called = np.mean([c.verdict.decided for c in cs])
    assert 0.04 <= called <= 0.06, called  # binomial sd 0.004
    assert called == np.mean([c.p < 0.05 for c in cs])
    assert np.mean([c.var_within for c in cs]) == pytest.approx(SIGMA**2, rel=0.03)
    # the moment estimate truncated at 0 is biased up a little
    assert np.mean([c.var_between for c in cs]) == pytest.approx(TAU**2, rel=0.1)
    share = TAU**2 / (TAU**2 + SIGMA**2 / s)
    assert np.median([c.between_share for c in cs]) == pytest.approx(share, abs=0.1)


def test_mde_at_the_holm_level_has_its_power():
    """A family of m = 4 (one true effect, three nulls): the MDE at alpha / m from the two
    components is detected at that level ~80% of the time, and by Holm over the family at
    least as often (Holm rejects every p <= alpha / m)."""
    r, s, m = 4, 3, 4
    target = stats.mde_replicated(TAU**2, SIGMA**2, r, s, alpha=0.05 / m)
    se = math.sqrt((TAU**2 + SIGMA**2 / s) / r)
    assert target == pytest.approx(stats.mde_se(se, r - 1, 0.05 / m))
    cs = [stats.compare_replicated(a, b) for a, b in studies(2000, target, r, s, seed=4)]
    power = np.mean([c.p < 0.05 / m for c in cs])
    assert 0.77 <= power <= 0.83, power
    rng = np.random.default_rng(5)
    found = 0
    for c in cs:
        nulls = [
            dataclasses.replace(c, p=float(u), label=f"null{k}")
            for k, u in enumerate(rng.random(3))
        ]
        fam = stats.holm_families([c, *nulls])
        found += fam[0].verdict == Verdict.BETTER
        assert fam[0].family_size == m and fam[0].alpha_mde == 0.05 / m
    assert found / len(cs) >= power - 1e-9
    assert fam[0].mde == pytest.approx(stats.mde_se(c.se, c.df, 0.05 / m))


def test_replicate_t_against_a_hand_computation():
    # replicate r's differences: [1, 3], [2, 2], [0.5, 1.5] (seeds in another order in base)
    arm = [{1: 2.0, 2: 4.0}, {1: 3.0, 2: 3.0}, {1: 1.5, 2: 2.5}]
    base = [{2: 1.0, 1: 1.0}, {2: 1.0, 1: 1.0}, {2: 1.0, 1: 1.0}]
    c = stats.compare_replicated(arm, base, label="x")
    means = [2.0, 2.0, 1.0]
    ref = sps.ttest_1samp(means, 0.0)
    assert c.diff == pytest.approx(5 / 3) and c.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.se == pytest.approx(np.std(means, ddof=1) / math.sqrt(3))
    assert c.ci_high - c.diff == pytest.approx(sps.t.ppf(0.975, 2) * c.se)
    within = (2 + 0 + 0.5) / 3  # pooled: SS 2, 0, 0.5 over 1 dof each
    assert c.var_within == pytest.approx(within)
    assert c.var_between == pytest.approx(max(0.0, np.var(means, ddof=1) - within / 2))
    assert (c.replicates, c.pairs, c.runs, c.failed) == (3, 6, 12, 0)
    assert c.replicate_diffs == pytest.approx(means)
    back = Comparison.from_json(json.loads(json.dumps(c.to_json(), allow_nan=False)))
    assert back.to_json() == c.to_json() and back.replicate_diffs == c.replicate_diffs
    with pytest.raises(ValueError, match="replicates must pair"):
        stats.compare_replicated(arm, base[:2])


def test_one_replicate_is_todays_seed_level_test_conditional_on_one_tuning():
    a, b = [0.81, 0.84, 0.82, 0.80, 0.85], [0.80, 0.82, 0.81, 0.79, 0.83]
    old = stats.compare_to(a, [0, 1, 2, 3, 4], b, [0, 1, 2, 3, 4])
    c = stats.compare_replicated([dict(enumerate(a))], [dict(enumerate(b))])
    assert (c.diff, c.p, c.ci_low, c.ci_high, c.test) == (
        old["diff"],
        old["p"],
        old["diff_low"],
        old["diff_high"],
        "paired t",
    )
    assert c.verdict == old["verdict"] == Verdict.BETTER
    assert c.conditional and c.headline == "better (conditional on one tuning)"
    assert math.isnan(c.var_between) and c.var_within > 0
    # the typed result goes through strict JSON and back
    back = Comparison.from_json(json.loads(json.dumps(c.to_json(), allow_nan=False)))
    assert back.to_json() == c.to_json() and back.verdict is Verdict.BETTER


def test_holm_across_workloads_in_families_against_a_hand_computation():
    """Primary: every trick vs baseline over both workloads, one family of 6. Controls (the
    A/A arms) and the equal-compute pair are adjusted on their own and change nothing there."""

    def comp(label, p, fam=Family.PRIMARY, diff=0.02):
        return Comparison(label=label, family=fam, p=p, diff=diff, se=0.01, df=4)

    prim = [("a/fgm", 0.001), ("a/vat", 0.04), ("a/rdrop", 0.012)]
    prim += [("b/fgm", 0.03), ("b/vat", 0.2), ("b/rdrop", 0.006)]
    cs = [comp(k, p) for k, p in prim]
    cs += [comp("a/aa", 0.01, Family.CONTROLS, -0.02), comp("b/aa", 0.5, Family.CONTROLS)]
    cs += [comp("a/fgm@ec", 0.03, Family.EQUAL_COMPUTE)]
    out = {c.label: c for c in stats.holm_families(cs)}
    # sorted primary: 0.001x6 = .006, .006x5 = .03, .012x4 = .048, .03x3 = .09, .04x2 = .08
    # (-> .09, monotone), .2x1 = .2
    hand = {"a/fgm": 0.006, "b/rdrop": 0.03, "a/rdrop": 0.048, "b/fgm": 0.09, "a/vat": 0.09}
    hand |= {"b/vat": 0.2, "a/aa": 0.02, "b/aa": 0.5, "a/fgm@ec": 0.03}
    assert {k: c.p_holm for k, c in out.items()} == pytest.approx(hand)
    assert [out[k].family_size for k in ("a/fgm", "a/aa", "a/fgm@ec")] == [6, 2, 1]
    assert [out[k].verdict for k in ("a/fgm", "b/rdrop", "a/rdrop", "b/fgm")] == [
        Verdict.BETTER,
        Verdict.BETTER,
        Verdict.BETTER,
        Verdict.NO_DIFF,
    ]
    assert out["a/aa"].verdict == Verdict.WORSE  # the A/A check fires: the study is flagged
    assert out["a/fgm"].mde == pytest.approx(stats.mde_se(0.01, 4, 0.05 / 6))
    # a family or verdict given as text (a caller, JSON) becomes the enum
    text = Comparison(family="controls", verdict="better", provisional=["x"])
    assert text.family is Family.CONTROLS and text.verdict is Verdict.BETTER
    assert text.provisional == ("x",)
    # the primary family alone gives the same adjusted p's: controls never dilute it
    alone = stats.holm_families(cs[:6])
    assert [c.p_holm for c in alone] == [out[k].p_holm for k, _ in prim]


def test_a_failed_run_counts_worst_or_withholds():
    rng = np.random.default_rng(6)
    arm = [{s: 0.8 + 0.01 * rng.standard_normal() for s in range(4)} for _ in range(3)]
    base = [{s: 0.78 + 0.01 * rng.standard_normal() for s in range(4)} for _ in range(3)]
    arm[1][2] = None  # diverged
    c = stats.compare_replicated(arm, base)
    worst = min(v for side in (arm, base) for rep in side for v in rep.values() if v is not None)
    filled = [dict(rep) for rep in arm]
    filled[1][2] = worst
    ref = stats.compare_replicated(filled, base)
    assert (c.diff, c.p, c.failed, c.runs) == (ref.diff, ref.p, 1, 24)
    assert "1/24 runs failed" in c.headline
    # dropping the failed run would have flattered the arm
    dropped = [dict(rep) for rep in arm]
    del dropped[1][2]
    assert stats.compare_replicated(dropped, base).diff > c.diff
    # an explicit worst value (accuracy 0), and NaN counts as failed too
    arm[1][2] = float("nan")
    a0, b0, k, n = stats.fill_failed(arm, base, worst=0.0)
    assert a0[1][2] == 0.0 and (k, n) == (1, 24) and b0 == base
    # lower-is-better metric: the worst is the largest
    assert stats.fill_failed([{0: None, 1: 2.0}], [{0: 1.0, 1: 3.0}], False)[0][0][0] == 3.0
    held = stats.compare_replicated(arm, base, failed="withhold")
    assert held.verdict == Verdict.WITHHELD and held.headline.startswith("withheld")
    assert stats.holm_families([held])[0].verdict == Verdict.WITHHELD


def test_equal_compute_partner_is_the_better_baseline():
    # the text FGM case: the longer baseline validated 0.6 points below the 1x one
    assert stats.equal_compute_partner(0.712, 0.706) == "1x"
    assert stats.equal_compute_partner(0.706, 0.712) == "longer"
    assert stats.equal_compute_partner(0.30, 0.25, higher_better=False) == "longer"
    assert stats.equal_compute_partner(0.7, 0.7) == "1x"  # a tie: the cheaper
    assert stats.equal_compute_partner(0.7, None) == "1x"
    assert stats.equal_compute_partner(float("nan"), 0.6) == "longer"


def test_an_edge_on_an_ordered_choice_makes_the_verdict_provisional():
    from runner.study.space import edges, parse

    bs = parse("trainer.batch_size", "choice(32, 64, 128)", "search")
    lr = parse("optimizer.lr", "loguniform(1e-4, 1e-2)", "search")
    assert edges([bs], {"trainer.batch_size": 128})[0]["side"] == "high"
    assert edges([bs], {"trainer.batch_size": 32})[0]["side"] == "low"
    assert edges([bs], {"trainer.batch_size": 64}) == []
    names = parse("optimizer", "choice(adamw, lion, sgd)", "search")
    assert edges([names], {"optimizer": "sgd"}) == []  # no order among names
    switch = parse("model.dropout", "choice(0, 0.1)", "search")
    assert edges([switch], {"model.dropout": 0.1}) == []  # two settings, not a range
    c = Comparison(diff=0.02, p=0.001, se=0.005, df=4, verdict=Verdict.BETTER)
    e = edges([bs, lr], {"trainer.batch_size": 128, "optimizer.lr": 1.1e-4})
    p = stats.with_edges(c, e)
    p = stats.with_edges(p, e[1:], whose="baseline's ")
    p = stats.with_edges(p, e[:1])  # a repeat (another replicate) counts once
    assert p.headline == (
        "better (provisional: trainer.batch_size at its range's ceiling; optimizer.lr at its "
        "range's floor; baseline's optimizer.lr at its range's floor)"
    )
    assert p.verdict == Verdict.BETTER and c.provisional == ()


def test_calibration_simulation_script_reproduces_the_known_cases():
    """scripts/sim_calibration.py: with no tuning variance one tuning's seed-level test is
    calibrated; with it, that test calls false verdicts and the replicate test stays at 5%; the
    bootstrap of the selection gives no choice variance where every config scores alike or
    one config is far ahead, and some where two are within the seed noise."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "sim_calibration.py"
    spec = importlib.util.spec_from_file_location("sim_calibration", path)
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    rng = np.random.default_rng(7)
    rate, z2 = sim.null_rates(np.zeros(1), 1.0, 1, 10, 20000, rng)
    assert 0.044 <= rate <= 0.056 and z2 == pytest.approx(1.0, abs=0.05)
    tuning = math.sqrt(0.5) * rng.standard_normal(20000)  # 5x the 10-seed mean's variance
    rate, z2 = sim.null_rates(tuning, 1.0, 1, 10, 20000, rng)
    assert rate > 0.2 and z2 > 2
    rate, z2 = sim.null_rates(tuning, 1.0, 3, 10, 20000, rng)
    assert 0.044 <= rate <= 0.056 and z2 == pytest.approx(1.0, abs=0.05)

    def trials(scores):
        return [{"select_value": v} for v in scores]

    assert sim.choice_draws(trials([0.7, 0.7, 0.7]), 0.01, 1, True, rng).var() < 1e-20
    assert sim.choice_draws(trials([0.9, 0.5, 0.4]), 0.01, 1, True, rng).var() < 1e-20
    close = sim.choice_draws(trials([0.70, 0.69, 0.5]), 0.01, 1, True, rng)
    assert close.var() > 0 and abs(close.mean()) < 1e-12
