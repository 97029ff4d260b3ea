"""Issue 32 wired into `tricks study`: replicated tuning paired by replicate, vary_data, the A/A
arm, one Holm family per study, edges, failed runs, the equal-compute partner, bad input; one
real study end to end (replicates: 2) in a subprocess."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from scipy import stats

from runner.errors import ConfigError
from runner.study import plan as P
from runner.study.spec import parse_text

from conftest import ROOT, cli

ENV = {"OMP_NUM_THREADS": "1"}
BASE = {
    "common": [
        "model=mlp",
        "model.hidden=16",
        "trainer.max_steps=10",
        "trainer.eval_every=10",
        "trainer.batch_size=32",
        "dataset.num_samples=500",
        "dataset.val_size=100",
    ],
    "baseline": "none",
    "arms": {"none": [], "ls": ["reg=[label_smoothing]"]},
    "search": {"optimizer.lr": "loguniform(1e-3, 1e-1)"},
    "budget": 2,
    "replicates": 2,
    "tune_seeds": [100, 101],
    "seeds": [0, 1, 2, 3],
    "select": "val/acc",
    "metric": "test/acc",
}


def text(**change) -> str:
    d = {**BASE, **change}
    return "# replicates test\n" + yaml.safe_dump(
        {k: v for k, v in d.items() if v is not None}, sort_keys=False
    )


def load(tmp_path, **change):
    from runner.study.protocol import load as _load

    (tmp_path / "s.yaml").write_text(text(**change))
    return _load(tmp_path / "s.yaml", [])


def _ovr(job, key):
    return next((o for o in job.overrides if o.startswith(key + "=")), None)


def test_arms_are_paired_by_replicate_and_replicates_differ(tmp_path):
    """Within replicate r every arm (the A/A one too) runs the same points of the shared keys,
    the same tune seeds, the same split and the same confirmation seeds; replicate 1 has its own
    scramble, seeds and split. Run dirs carry the replicate."""
    study = load(tmp_path)
    assert set(study.arms) == {"none", "ls", "aa"} and study.vary_data  # defaults with R = 2
    plans = P.arm_plans(study)
    per = []
    for r in range(2):
        trials, jobs = P.tune_jobs(study, "main", plans, P.points_for(study, plans, r), r)
        chosen = {a: 1 for a in plans}
        conf = P.confirm_jobs(study, "main", plans, trials, chosen, r)
        per.append((jobs, conf))
        for a in plans:
            mine = [j for j in jobs if j.arm == a]
            ref = [j for j in jobs if j.arm == "none"]
            assert [_ovr(j, "optimizer.lr") for j in mine] == [_ovr(j, "optimizer.lr") for j in ref]
            assert [j.seed for j in mine] == [j.seed for j in ref] == [100 + r] * 2
            assert {_ovr(j, "dataset.data_seed") for j in mine + conf if j.arm == a} == {
                None if r == 0 else "dataset.data_seed=43"
            }
            assert sorted(j.seed for j in conf if j.arm == a) == [2 * r, 2 * r + 1]
            assert all(j.key.startswith(f"runs/main/{a}/rep-{r}/") for j in mine)
            assert all(j.replicate == r for j in mine)
    lr = [[_ovr(j, "optimizer.lr") for j in jobs if j.arm == "none"] for jobs, _ in per]
    assert lr[0] != lr[1]  # each replicate its own Sobol scramble
    keys = [j.key for jobs, conf in per for j in jobs + conf]
    assert len(keys) == len(set(keys))


def test_one_replicate_keeps_todays_paths_and_plan(tmp_path):
    study = parse_text(tmp_path / "s.yaml", text(replicates=None, tune_seeds=[100]))
    assert study.replicates == 1 and not study.aa and set(study.arms) == {"none", "ls"}
    plans = P.arm_plans(study)
    trials, jobs = P.tune_jobs(study, "main", plans, P.points_for(study, plans))
    assert jobs[0].key == "runs/main/none/trial-00-seed-100"
    conf = P.confirm_jobs(study, "main", plans, trials, {"none": 0, "ls": 1})
    assert conf[0].key == "runs/main/none/confirm-trial-00-seed-0"
    assert not any("data_seed" in o for j in jobs + conf for o in j.overrides)
    one = parse_text(tmp_path / "s.yaml", text(replicates=None, tune_seeds=[100], aa=True))
    assert one.arms["aa"] == ["trainer.stream_offset=1"] and one.controls == ["aa"]


def test_vary_data_changes_the_split_per_replicate_never_per_arm(tmp_path):
    """The composed configs: replicate 1 re-draws mnist1d (data_seed 43), the same for every
    arm; vary_data: false keeps the file's split in every replicate."""
    from runner.config import compose

    study = load(tmp_path)
    plans = P.arm_plans(study)
    seeds = {}
    for r in range(2):
        for a in plans:
            ovr = P.run_ovr(study, "main", a, plans[a], {"optimizer.lr": 0.01}, 0, r)
            seeds[(a, r)] = compose(ovr).dataset.data_seed
    assert {seeds[(a, 0)] for a in plans} == {42} and {seeds[(a, 1)] for a in plans} == {43}
    same = load(tmp_path, vary_data=False)
    ovr = P.run_ovr(same, "main", "ls", P.arm_plans(same)["ls"], {}, 0, 1)
    assert compose(ovr).dataset.data_seed == 42


# -- verdicts on records: the families, edges, failures, equal compute ----------------------


def rec(reps, select=0.5, edge=(), verdict=""):
    """An arm record of `reps` replicates, each a dict seed -> value (None: failed)."""
    return {
        "verdict": verdict,
        "chosen": {"optimizer.lr": 0.01},
        "chosen_trial": 0,
        "trials": [{"index": 0, "select_value": select}],
        "edge": list(edge),
        "final": {
            "n": len(ok := [v for m in reps for v in m.values() if v is not None]),
            "mean": sum(ok) / len(ok),
            "failed": 0,
        },
        "replicates": [
            {
                "seeds": list(m),
                "select_value": select,
                "final": {
                    "seeds": [s for s, v in m.items() if v is not None],
                    "values": [v for v in m.values() if v is not None],
                },
            }
            for m in reps
        ],
    }


def result_of(arms, **extra):
    return {"baseline": "none", "higher_better": True, "metric": "test/acc", "arms": arms, **extra}


BASE_REPS = [{0: 0.80, 1: 0.82, 2: 0.79}, {3: 0.70, 4: 0.73, 5: 0.71}]


def test_the_aa_arm_is_a_control_reported_first_and_flags_the_study():
    from runner.study.export import headline
    from runner.study.verdicts import study_verdicts

    good = [{s: v + 0.05 for s, v in m.items()} for m in BASE_REPS]
    good[1][3] += 0.01
    aa = [{s: v + 0.001 * (s % 2) for s, v in m.items()} for m in BASE_REPS]
    res = result_of(
        {"none": rec(BASE_REPS, verdict="baseline"), "fgm": rec(good), "aa": rec(aa)},
        controls=["aa"],
        aa_arm="aa",
    )
    res["calibration"] = study_verdicts(res)
    arms = res["arms"]
    assert arms["fgm"]["diff"]["family"] == "primary" and arms["fgm"]["diff"]["family_size"] == 1
    assert arms["aa"]["diff"]["family"] == "controls"
    # the primary family of one: p_holm is its raw p (the A/A arm does not dilute it)
    assert arms["fgm"]["diff"]["p_holm"] == arms["fgm"]["diff"]["p"]
    lines = headline(res)
    assert lines[0].startswith("A/A calibration aa") and "fgm" in lines[1]
    assert not res["calibration"]["flagged"]
    # an A/A arm called better: the study is flagged, first line
    res["arms"]["aa"] = rec(good)
    res["calibration"] = study_verdicts(res)
    assert res["arms"]["aa"]["verdict"] == "better" and res["calibration"]["flagged"]
    assert headline(res)[0].startswith("FLAGGED")


def test_holm_across_workloads_on_a_committed_study_by_hand():
    """experiments/derived (two workloads): every trick's p recomputed by a paired t (scipy),
    Holm by hand over ALL the tricks of both workloads (one family), against study_verdicts."""
    from runner.study.verdicts import study_verdicts

    res = json.loads((ROOT / "experiments/derived/study/study.json").read_text())
    res = copy.deepcopy(res)
    study_verdicts(res)
    ps = {}
    for w, v in res["by_workload"].items():
        base = v["arms"][res["baseline"]]["final"]
        bv = dict(zip(base["seeds"], base["values"]))
        for a, r in v["arms"].items():
            if a == res["baseline"] or r.get("equal_compute_of"):
                continue
            av = dict(zip(r["final"]["seeds"], r["final"]["values"]))
            s = sorted(av)
            diffs = [av[x] - bv[x] for x in s]
            # an arm identical to the baseline (LazyOptimizer without an embedding): no spread,
            # a difference of exactly 0: p 1 (runner.stats' convention), in the family
            same = all(x == 0 for x in diffs)
            t = stats.ttest_rel([av[x] for x in s], [bv[x] for x in s])
            ps[(w, a)] = 1.0 if same else t.pvalue
    assert len(ps) > 2 and len({w for w, _ in ps}) == 2
    order = sorted(ps, key=ps.get)
    m, run, want = len(order), 0.0, {}
    for i, k in enumerate(order):
        run = max(run, min(1.0, (m - i) * ps[k]))
        want[k] = run
    for (w, a), ph in want.items():
        d = res["by_workload"][w]["arms"][a]["diff"]
        assert d["p"] == pytest.approx(ps[(w, a)], rel=1e-9)
        assert d["p_holm"] == pytest.approx(ph, rel=1e-9)
        assert d["family_size"] == m and d["conditional"]  # one replicate: one tuning
        assert d["alpha_mde"] == pytest.approx(0.05 / m)


def test_an_edge_on_an_ordered_choice_makes_the_verdict_provisional():
    from runner.study.export import headline
    from runner.study.space import edges, parse
    from runner.study.verdicts import study_verdicts

    width = parse("model.hidden", "choice(32, 64, 128)", "search")
    e = edges([width], {"model.hidden": 128})
    assert e and e[0]["side"] == "high"
    good = [{s: v + 0.05 + 0.002 * s for s, v in m.items()} for m in BASE_REPS]
    res = result_of({"none": rec(BASE_REPS, verdict="baseline"), "w": rec(good, edge=e)})
    study_verdicts(res)
    d = res["arms"]["w"]["diff"]
    assert d["provisional"] == ["model.hidden at its range's ceiling"]
    assert "provisional: model.hidden at its range's ceiling" in headline(res)[0]


def test_a_failed_confirmation_run_counts_worst_never_dropped():
    """Seed 1 of the arm failed: it enters as the worst completed value of the comparison
    (both sides), so the replicate mean differences are computed by hand with it."""
    from runner.study.verdicts import study_verdicts

    arm = [{0: 0.85, 1: None, 2: 0.84}, {3: 0.74, 4: 0.78, 5: 0.75}]
    res = result_of({"none": rec(BASE_REPS, verdict="baseline"), "x": rec(arm)})
    study_verdicts(res)
    d = res["arms"]["x"]["diff"]
    worst = min(v for m in arm + BASE_REPS for v in m.values() if v is not None)
    filled = [{**arm[0], 1: worst}, arm[1]]
    means = [sum(f[s] - b[s] for s in b) / len(b) for f, b in zip(filled, BASE_REPS, strict=True)]
    assert d["failed"] == 1 and d["runs"] == 12 and d["pairs"] == 6
    assert d["replicate_diffs"] == pytest.approx(means)
    assert d["mean"] == pytest.approx(sum(means) / 2)
    assert "1/12 runs failed" in d["qualified"]


@pytest.mark.parametrize("longer_val, partner", [(0.4, "none"), (0.6, "none@fgm")])
def test_the_equal_compute_partner_is_the_better_baseline_on_validation(longer_val, partner):
    from runner.study.verdicts import study_verdicts

    longer = [{s: v + 0.01 for s, v in m.items()} for m in BASE_REPS]
    good = [{s: v + 0.05 + 0.001 * s for s, v in m.items()} for m in BASE_REPS]
    ec = rec(longer, select=longer_val)
    ec["equal_compute_of"] = "fgm"
    res = result_of(
        {"none": rec(BASE_REPS, 0.5, verdict="baseline"), "fgm": rec(good), "none@fgm": ec},
        select_higher_better=True,
    )
    study_verdicts(res)
    e = res["arms"]["fgm"]["equal_compute"]
    assert e["vs"] == partner and e["val_1x"] == 0.5 and e["val_longer"] == longer_val
    assert e["diff"]["family"] == "equal compute"
    assert res["arms"]["fgm"]["diff"]["family_size"] == 1  # not in the primary family
    if partner == "none":  # against the 1x: the same difference as the primary comparison
        assert e["diff"]["mean"] == pytest.approx(res["arms"]["fgm"]["diff"]["mean"])


def test_cost_in_passes_from_the_tricks_declared_facts():
    from runner.study.export import declared_passes

    assert declared_passes(["reg=[fgm]"])["per_step"] == 2.0
    assert declared_passes([])["per_step"] == 1.0  # the baseline: one pass a step
    assert declared_passes(["reg=[gradpen]", "clip=norm"])["per_step"] == 3.0  # "~3 (...)"
    vat = declared_passes(["reg=[vat,flooding]"])
    assert vat["per_step"] is None and vat["facts"]["reg=vat"].startswith("2+iters")
    assert "engine does not count" in vat["source"]


# -- bad input: one line, before any run ------------------------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        ({"replicates": 0}, "replicates: must be an integer >= 1"),
        ({"seeds": [0, 1, 2]}, "seeds: 3 seeds cannot be split across replicates: 2"),
        ({"tune_seeds": [100]}, "tune_seeds: 1 seeds cannot be split across replicates: 2"),
        ({"seeds_per_replicate": 3}, "seeds_per_replicate: 3 x replicates 2"),
        ({"controls": ["lss"]}, "controls: unknown arm 'lss' (allowed: did you mean 'ls'?"),
        ({"arms": {"none": [], "aa": []}}, "aa: an arm is named 'aa' already"),
    ],
)
def test_bad_replicate_input_is_one_line(tmp_path, change, words):
    with pytest.raises(ConfigError) as e:
        parse_text(tmp_path / "s.yaml", text(**change))
    assert str(e.value).startswith(words) and "\n" not in str(e.value)


def test_seeds_per_replicate_makes_the_seeds(tmp_path):
    s = parse_text(tmp_path / "s.yaml", text(seeds=None, seeds_per_replicate=3))
    assert s.seeds == [102, 103, 104, 105, 106, 107] and s.rep_seeds(1) == [105, 106, 107]


def test_vary_data_without_a_split_seed_is_refused(tmp_path, monkeypatch):
    """No shipped dataset lacks one (mnist1d: data_seed; csv, tweets, hf: split_seed): a
    dataset whose config has none is stood in for by looking for a key no dataset has."""
    from runner.study import protocol

    monkeypatch.setattr(protocol, "SPLIT_KEYS", ("no_such_seed",))
    with pytest.raises(ConfigError, match="vary_data: the dataset of workload 'main' has no"):
        load(tmp_path, vary_data=True)
    assert not load(tmp_path).vary_data  # the default: on only where the dataset allows it


def test_bad_input_from_the_cli_writes_nothing(tmp_path):
    (tmp_path / "s.yaml").write_text(text(replicates=0))
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and not (tmp_path / "out").exists()
    assert r.stderr.strip().count("\n") == 0 and "replicates" in r.stderr


# -- a real study, end to end ------------------------------------------------------------------


def test_a_replicated_study_end_to_end(tmp_path):
    """`tricks study FILE --out DIR` with replicates: 2 (and the A/A arm, vary_data by default),
    as a user runs it: run dirs per replicate, each replicate's split and seeds in the runs'
    configs, the verdict from the replicate t with its variance components, the A/A first."""
    (tmp_path / "s.yaml").write_text(text(budget=1, arms={"none": [], "ls": BASE["arms"]["ls"]}))
    r = subprocess.run(
        [sys.executable, "-m", "runner.cli", "study", "s.yaml", "--out", "out", "--parallel", "2"],
        cwd=tmp_path,
        env={**__import__("os").environ, **ENV, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    s = json.loads((out / "study.json").read_text())
    assert s["replicates"] == 2 and s["seeds_per_replicate"] == 2 and s["vary_data"]
    assert set(s["arms"]) == {"none", "ls", "aa"}
    for a in s["arms"]:
        for rep in (0, 1):
            cfgs = sorted((out / f"runs/main/{a}/rep-{rep}").glob("confirm-*/config.yaml"))
            got = [yaml.safe_load(c.read_text()) for c in cfgs]
            assert [c["seed"] for c in got] == [2 * rep, 2 * rep + 1]
            assert {c["dataset"]["data_seed"] for c in got} == {42 + rep}
            assert {c["trainer"]["stream_offset"] for c in got} == {int(a == "aa")}
    d = s["arms"]["ls"]["diff"]
    assert d["test"] == "replicate t" and d["replicates"] == 2 and d["seeds_per_replicate"] == 2
    assert d["var_within"] is not None and d["family"] == "primary" and d["family_size"] == 1
    assert len(d["replicate_diffs"]) == 2 and not d["conditional"]
    assert s["arms"]["aa"]["diff"]["family"] == "controls"
    assert r.stdout.splitlines()[0].startswith("A/A calibration aa")
    md = (out / "report.md").read_text()
    assert md.index("## Calibration: the A/A arm") < md.index("## Verdicts")
    assert "## Replicates and variance components" in md
    assert "| ls | r1/00 |" in md and "r0: optimizer.lr=" in md  # each replicate's trials, pick
