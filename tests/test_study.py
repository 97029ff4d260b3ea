"""`tricks study`: the protocol end to end as a user runs it (subprocess), its controls, resume
after a real SIGKILL, the lock, and every bad input of issue 16 item 8 (one line, exit 2, nothing
run). Tiny mnist1d runs: a crippled baseline (lr 1e-6), an arm identical to it (null control), a
normal arm (positive control) whose lr choice includes a diverging value (a failing trial)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, cli

BASE = {
    "common": [
        "model=mlp",
        "model.hidden=32",
        "trainer.max_steps=60",
        "trainer.eval_every=20",
        "trainer.batch_size=32",
        "dataset.num_samples=1500",
        "dataset.val_size=200",
    ],
    "baseline": "slow",
    "arms": {"slow": ["optimizer.lr=1e-6"], "same": ["optimizer.lr=1e-6"], "good": []},
    "search": {"optimizer.weight_decay": "uniform(0.0, 0.01)"},
    "arm_search": {"good": {"optimizer.lr": "choice(0.01, 1e6)"}},
    "budget": 2,
    "tune_seeds": [100],
    "seeds": [0, 1, 2],
    "select": "val/acc",
    "metric": "test/acc",
    "target": {"val/acc": 0.25},
}
ENV = {"OMP_NUM_THREADS": "1"}


def study_text(**change) -> str:
    d = {**BASE, **change}
    return "# a tiny test study\n" + yaml.safe_dump(
        {k: v for k, v in d.items() if v is not None}, sort_keys=False
    )


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    (d / "s.yaml").write_text(study_text())
    r = cli(["study", "s.yaml", "--out", "out", "--parallel", "2"], cwd=d, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    return d, json.loads((d / "out" / "study.json").read_text()), r


def values(study: dict) -> dict:
    """What must not depend on how the study was run (timings and paths excluded)."""
    return {
        a: {
            "trials": [(t["params"], t["select_value"], t["status"]) for t in r["trials"]],
            "chosen": r["chosen"],
            "final": (r["final"]["values"], r["final"]["seeds"]),
            "diff": r["diff"],
            "verdict": r["verdict"],
        }
        for a, r in study["arms"].items()
    }


def test_end_to_end_writes_the_contract_and_ordinary_run_dirs(e2e):
    d, s, r = e2e
    out = d / "out"
    for k in ("baseline", "select", "metric", "budget", "commit", "dirty", "arms"):
        assert k in s
    assert isinstance(s["dirty"], bool) and s["commit"]
    assert (s["baseline"], s["select"], s["metric"], s["budget"]) == (
        "slow",
        "val/acc",
        "test/acc",
        2,
    )
    assert set(s["arms"]) == {"slow", "same", "good"}
    for arm, rec in s["arms"].items():
        assert len(rec["trials"]) == 2
        for k in ("chosen", "edge", "final", "diff", "verdict", "cost"):
            assert k in rec
        assert rec["final"]["seeds"] == [0, 1, 2] and rec["final"]["n"] == 3
        for rd in [t["run_dir"] for t in rec["trials"]] + rec["final"]["run_dirs"]:
            assert (out / rd / "config.yaml").is_file() and (out / rd / "summary.json").is_file()
            assert (out / rd).parent.parent.name == "main" and (out / rd).parent.name == arm
        done = out / rec["final"]["run_dirs"][0]
        assert not list((done / "checkpoints").glob("*.pt"))  # keep_checkpoints=none
        cfg = yaml.safe_load((done / "config.yaml").read_text())
        assert cfg["seed"] == 0 and cfg["trainer"]["progress"] is False and cfg["arm"] == arm
    assert (out / "study.yaml").read_text() == (d / "s.yaml").read_text()  # the inputs, pinned
    assert [i["commit"] for i in s["invocations"]] == [s["commit"]]
    # the machine beside the commit: float kernels differ between CPUs, so a result is
    # reproduced bit for bit only on the machine (vector unit, torch) that made it
    import torch

    m = s["machine"]
    assert m["torch"] == torch.__version__ and m["cores"] == os.cpu_count()
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and m["cpu"]
    assert [i["machine"] for i in s["invocations"]] == [m]
    assert f"machine: {m['cpu']} ({m['cpu_capability']})" in (out / "report.md").read_text()
    assert not (out / ".study.lock").exists()
    assert "good: test/acc" in r.stdout and "better" in r.stdout
    if (ROOT / "runner" / "study" / "report.py").is_file():
        assert (out / "report.md").is_file()


def test_positive_and_null_controls(e2e):
    arms = e2e[1]["arms"]
    assert arms["good"]["verdict"] == "better"  # lr 0.01 against a baseline at lr 1e-6
    assert arms["good"]["diff"]["mean"] > 0.05
    assert arms["same"]["verdict"] not in ("better", "worse")  # identical to the baseline
    assert arms["same"]["final"]["values"] == arms["slow"]["final"]["values"]
    assert arms["slow"]["verdict"] == "baseline" and arms["slow"]["diff"] is None


def test_holm_adjusts_across_the_arms_compared_with_the_baseline(e2e):
    arms = e2e[1]["arms"]
    p = {a: arms[a]["diff"]["p"] for a in ("same", "good")}
    lo, hi = sorted(p, key=p.get)
    assert arms[lo]["diff"]["p_holm"] == pytest.approx(min(1.0, 2 * p[lo]))
    assert arms[hi]["diff"]["p_holm"] == pytest.approx(max(min(1.0, 2 * p[lo]), p[hi]))


def test_a_failing_trial_is_recorded_failed_and_listed(e2e):
    _, s, r = e2e
    trials = s["arms"]["good"]["trials"]
    bad = [t for t in trials if t["params"]["optimizer.lr"] == 1e6]
    assert len(bad) == 1 and bad[0]["status"] == "failed" and bad[0]["select_value"] is None
    assert "non-finite" in bad[0]["errors"][0]
    assert s["arms"]["good"]["chosen"]["optimizer.lr"] == 0.01
    assert "failed" in r.stderr and bad[0]["run_dir"] in r.stderr


def test_shared_keys_take_the_same_points_in_every_arm_and_the_best_is_chosen(e2e):
    arms = e2e[1]["arms"]
    wd = {a: [t["params"]["optimizer.weight_decay"] for t in r["trials"]] for a, r in arms.items()}
    assert wd["slow"] == wd["same"] == wd["good"] and len(set(wd["slow"])) == 2
    for rec in arms.values():
        ok = [t for t in rec["trials"] if t["select_value"] is not None]
        best = max(ok, key=lambda t: (t["select_value"], -t["index"]))
        assert rec["chosen"] == best["params"] and rec["chosen_trial"] == best["index"]


def test_time_to_target_reads_the_confirmation_curves(e2e):
    d, s, _ = e2e
    t = s["arms"]["good"]["target"]
    assert t["key"] == "val/acc" and t["n"] == 3
    for rd, step in zip(s["arms"]["good"]["final"]["run_dirs"], t["steps"]):
        rows = [json.loads(l) for l in (d / "out" / rd / "metrics.jsonl").read_text().splitlines()]
        hits = [r["step"] for r in rows if r.get("val/acc", -1) >= 0.25]
        assert step == (hits[0] if hits else None)
    assert s["arms"]["slow"]["target"]["reached"] == 0


def test_selection_reads_the_select_metric_only(tmp_path):
    """Trial 1 is far better on test/acc and worse on val/acc: choosing on anything but `select`
    would pick it."""
    from runner.study.results import choose, score_trials

    trials = []
    for i, (val, test) in enumerate([(0.8, 0.1), (0.5, 0.99), (0.7, 0.98)]):
        rd = tmp_path / f"t{i}"
        rd.mkdir()
        (rd / "summary.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "best/val/acc": val,
                    "test/acc": test,
                    "final/test/acc": test,
                    "final/val/acc": val,
                }
            )
        )
        trials.append({"index": i, "params": {}, "run_dirs": [rd.name]})
    score_trials(tmp_path, trials, "val/acc")
    assert [t["select_value"] for t in trials] == [0.8, 0.5, 0.7]
    assert choose(trials, higher=True) == 0
    (tmp_path / "t0" / "summary.json").write_text(json.dumps({"status": "failed", "error": "x"}))
    score_trials(tmp_path, trials, "val/acc")
    assert trials[0]["status"] == "failed" and choose(trials, higher=True) == 2  # failed: worst


def _kill_during_tuning(cwd: Path, out: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    p = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "study", "s.yaml", "--out", out],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    done = lambda: [
        f
        for f in (cwd / out / "runs").glob("*/*/trial-*/summary.json")
        if json.loads(f.read_text()).get("status") == "completed"
    ]
    while time.time() < deadline and p.poll() is None and not done():
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return len(done())


def test_resume_after_sigkill_in_tuning_gives_the_uninterrupted_study(e2e, tmp_path):
    d, s, _ = e2e
    (tmp_path / "s.yaml").write_text(study_text())
    n_done = _kill_during_tuning(tmp_path, "out")
    assert 1 <= n_done < 6, "the kill must land inside the tuning phase"
    assert not (tmp_path / "out" / "study.json").exists()
    time.sleep(1)  # the orphaned worker notices its parent is gone and exits
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    resumed = json.loads((tmp_path / "out" / "study.json").read_text())
    assert values(resumed) == values(s)
    assert len(resumed["invocations"]) == 2  # the killed start and the resuming one


def test_a_second_study_on_the_same_dir_refuses(tmp_path):
    (tmp_path / "s.yaml").write_text(study_text())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".study.lock").write_text(str(os.getpid()))  # a live holder
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: --out:") and "in use by another tricks study" in r.stderr
    assert not (tmp_path / "out" / "runs").exists()


def test_another_study_file_on_a_used_dir_refuses(e2e, tmp_path):
    d, _, _ = e2e
    (tmp_path / "t.yaml").write_text(study_text(budget=3))
    r = cli(["study", str(tmp_path / "t.yaml"), "--out", str(d / "out")], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "holds a study of another study file" in r.stderr
    r = cli(["study", "s.yaml", "--out", "out", "trainer.log_every=5"], cwd=d, env=ENV)
    assert r.returncode == 2 and "OVERRIDES: " in r.stderr


def test_compare_pairs_arm_against_arm_with_positive_and_null_controls(tmp_path):
    """compare: [[a, b]] tests arm a against arm b (paired by seed, Holm across the pairs):
    lr 0.01 against another arm at lr 1e-6 is better (positive control); two arms of the same
    configuration give the same values, no difference (null control)."""
    arms = {"slow": ["optimizer.lr=1e-6"], "slow2": ["optimizer.lr=1e-6"]}
    arms |= {"good": ["optimizer.lr=0.01"], "good2": ["optimizer.lr=0.01"]}
    text = study_text(
        arms=arms,
        arm_search=None,
        budget=1,
        target=None,
        compare=[["good", "slow2"], ["good2", "good"]],
    )
    (tmp_path / "s.yaml").write_text(text)
    r = cli(["study", "s.yaml", "--out", "out", "--parallel", "2"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "out" / "study.json").read_text())
    assert s["compare"] == [["good", "slow2"], ["good2", "good"]]
    a = s["arms"]
    pos, null = a["good"]["versus"][0], a["good2"]["versus"][0]
    assert pos["vs"] == "slow2" and pos["verdict"] == "better" and pos["diff"]["mean"] > 0.05
    assert null["vs"] == "good" and null["diff"]["mean"] == 0 and null["verdict"] != "better"
    assert a["good2"]["final"]["values"] == a["good"]["final"]["values"]
    # Holm across the two pairs: the positive control's p doubled (the null's p is 1)
    assert pos["diff"]["p_holm"] == pytest.approx(min(1.0, 2 * pos["diff"]["p"]))
    assert "versus" not in a["slow2"]  # the baseline family is untouched by compare:
    assert a["slow2"]["verdict"] not in ("better", "worse")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Arm against arm" in md and "**good** is better than slow2" in md
    row = [line for line in md.splitlines() if line.startswith("| good2 | good |")]
    assert len(row) == 1 and "better" not in row[0]


def test_a_changed_comment_resumes_a_changed_key_refuses(e2e, tmp_path):
    """A study's pieces may come from a study file whose comments changed (a corrected note, a
    measured time) or whose compare: pairs did: they resume; any key a run depends on (here the
    budget) is another study."""
    d, s, _ = e2e
    shutil.copytree(d / "out", tmp_path / "out")
    text = study_text().replace("# a tiny test study", "# a tiny test study, note corrected")
    (tmp_path / "s.yaml").write_text(text + "# measured: a few seconds\n")
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((tmp_path / "out" / "study.json").read_text())
    assert values(again) == values(s) and len(again["invocations"]) == len(s["invocations"]) + 1
    assert (tmp_path / "out" / "study.yaml").read_text() == (tmp_path / "s.yaml").read_text()
    # compare: reads finished runs only: added on a resume, computed from DIR's runs
    (tmp_path / "s.yaml").write_text(study_text(compare=[["good", "same"]]))
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((tmp_path / "out" / "study.json").read_text())
    assert values(again) == values(s) and again["compare"] == [["good", "same"]]
    vs = again["arms"]["good"]["versus"][0]
    assert vs["vs"] == "same" and vs["verdict"] == "better"
    (tmp_path / "s.yaml").write_text(study_text(budget=3))  # a key: another study
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and "holds a study of another study file" in r.stderr


def test_a_run_dir_of_another_config_stops_the_study_untouched(e2e, tmp_path):
    """A run dir whose config differs from what the study's inputs compose now (code changed
    under the study) is not a failed trial: the study stops with one line naming the dir and
    the key, writes nothing into that dir, and leaves study.json as it was."""
    d, s, _ = e2e
    shutil.copytree(d / "out", tmp_path / "out")
    shutil.copy(d / "s.yaml", tmp_path / "s.yaml")
    trial = sorted((tmp_path / "out" / "runs").glob("*/good/trial-00-seed-100"))[0]
    (trial / "summary.json").unlink()  # an interrupted run of the older code
    cfg = yaml.safe_load((trial / "config.yaml").read_text())
    cfg["trainer"]["log_every"] = 7
    (trial / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = (trial / "config.yaml").read_text(), sorted(p.name for p in trial.iterdir())
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    err = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert err[0].startswith("error: --out: ") and "trainer.log_every differs" in err[0]
    assert str(trial.relative_to(tmp_path)) in err[0] and "no trial counted failed" in err[0]
    assert ((trial / "config.yaml").read_text(), sorted(p.name for p in trial.iterdir())) == before
    assert json.loads((tmp_path / "out" / "study.json").read_text()) == s


def test_report_only_remakes_the_report(e2e):
    d, s, _ = e2e
    if not (ROOT / "runner" / "study" / "report.py").is_file():
        pytest.skip("runner.study.report not in this tree")
    (d / "out" / "report.md").unlink()
    r = cli(["study", "s.yaml", "--out", "out", "--report-only"], cwd=d, env=ENV)
    assert r.returncode == 0, r.stderr
    assert (d / "out" / "report.md").is_file()
    assert json.loads((d / "out" / "study.json").read_text()) == s


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    (tmp_path / "s.yaml").write_text(study_text(budget=3))
    r = cli(["study", "s.yaml", "--dry-run", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "runs: 18" in r.stdout  # 3 arms x (3 trials + 3 seeds)
    assert r.stdout.count("trial  2: optimizer.weight_decay=") == 3
    assert not (tmp_path / "out").exists() and not (tmp_path / "studies").exists()


def _by_workload_values(study: dict) -> dict:
    return {w: values({"arms": v["arms"]}) for w, v in study["by_workload"].items()}


def test_a_study_run_in_pieces_equals_the_whole_study(tmp_path):
    """`--workloads a` then `--workloads b` on one DIR (runs/ deleted between them, as when the
    first piece's study dir is committed without runs and the second runs in a later session):
    study.json holds both workloads with the same numbers as the whole study run at once, says
    which commit made each, and the report compares across both. The second piece's study file
    has a corrected comment and an added `compare:` (neither changes a run): the first piece's
    record is kept, and its arm-against-arm pair computed from its recorded values."""
    two = study_text(
        workloads={"a": ["model.hidden=16"], "b": ["model.hidden=24"]},
        arms={"slow": ["optimizer.lr=1e-6"], "same": ["optimizer.lr=1e-6"], "good": []},
        arm_search={"good": {"optimizer.lr": "choice(0.01, 1e6)"}},
        seeds=[0, 1],
        target=None,
    )
    (tmp_path / "s.yaml").write_text(two)
    r = cli(["study", "s.yaml", "--out", "whole", "--parallel", "2"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    whole = json.loads((tmp_path / "whole" / "study.json").read_text())
    assert whole["workloads_not_run"] == [] and set(whole["by_workload"]) == {"a", "b"}

    r = cli(["study", "s.yaml", "--out", "p", "--workloads", "b", "--dry-run"], cwd=tmp_path)
    assert r.returncode == 0 and "workloads: b " in r.stdout and "runs: 12" in r.stdout
    r = cli(["study", "s.yaml", "--out", "p", "--workloads", "a"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "p" / "study.json").read_text())
    assert list(first["by_workload"]) == ["a"] and first["workloads_not_run"] == ["b"]
    assert not (tmp_path / "p" / "runs" / "b").exists()
    md = (tmp_path / "p" / "report.md").read_text()
    assert "Not run yet: b" in md and "--workloads b" in md and "## Workload a" in md
    assert (tmp_path / "p" / "curves_a.png").is_file()

    import shutil

    shutil.rmtree(tmp_path / "p" / "runs")  # a later session: only the committed files
    later = yaml.safe_load(two) | {"compare": [["good", "same"]]}
    (tmp_path / "s.yaml").write_text("# corrected note\n" + yaml.safe_dump(later, sort_keys=False))
    r = cli(["study", "s.yaml", "--out", "p", "--workloads", "b"], cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    pieces = json.loads((tmp_path / "p" / "study.json").read_text())
    assert list(pieces["by_workload"]) == ["a", "b"] and pieces["workloads_not_run"] == []
    assert _by_workload_values(pieces) == _by_workload_values(whole)
    for w in ("a", "b"):  # a from its kept record, b from its runs
        arms = pieces["by_workload"][w]["arms"]
        good, same = arms["good"]["final"], arms["same"]["final"]
        vs = arms["good"]["versus"]
        assert [v["vs"] for v in vs] == ["same"] and "versus" not in arms["same"]
        diff = sum(good["values"]) / len(good["values"]) - sum(same["values"]) / len(same["values"])
        assert abs(vs[0]["diff"]["mean"] - diff) < 1e-12 and vs[0]["diff"]["p_holm"] is not None
    assert pieces["by_workload"]["a"]["run"] == first["by_workload"]["a"]["run"]
    assert pieces["by_workload"]["b"]["run"]["machine"] == pieces["machine"]
    assert pieces["by_workload"]["b"]["run"]["finished"] == pieces["finished"]
    assert pieces["dirty"] == any(v["run"]["dirty"] for v in pieces["by_workload"].values())
    assert [i.get("workloads") for i in pieces["invocations"]] == [["a"], ["b"]]
    md = (tmp_path / "p" / "report.md").read_text()
    assert "## Across workloads" in md and "Not run yet" not in md
    assert "curves_a.png" in md  # drawn by the first piece, kept: its runs are gone
    assert "good: test/acc" in r.stdout  # the headline covers both workloads
    assert r.stdout.count("good: test/acc") == 2


def test_unknown_workload_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "s.yaml").write_text(study_text(workloads={"a": [], "b": []}))
    r = cli(["study", "s.yaml", "--out", "out", "--workloads", "a,c"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.strip() == "error: --workloads: unknown workload 'c' (allowed: a, b)"
    assert not (tmp_path / "out").exists()


BAD = [
    (dict(baseline="nope"), "baseline: unknown arm 'nope' (allowed: slow, same, good)"),
    (
        dict(arm_search={"nope": {"reg.fgm.eps": "uniform(0, 1)"}}),
        "arm_search: unknown arm 'nope' (allowed: slow, same, good)",
    ),
    (
        dict(search={"optimizer.nope": "uniform(0, 1)"}),
        "search: arms.slow: optimizer.nope: unknown key",
    ),
    (
        dict(arms={"slow": [], "x": ["trainer.nope=3"]}, arm_search=None),
        "arms.x: trainer.nope: unknown key",
    ),
    (
        dict(arms={"slow": [], "x": ["reg=[nope]"]}, arm_search=None),
        "arms.x: reg: unknown option 'nope'",
    ),
    (
        dict(search={"optimizer.weight_decay": "uniform(0.1)"}),
        "search.optimizer.weight_decay: malformed range 'uniform(0.1)': needs two ends (allowed: "
        "loguniform(a, b), uniform(a, b), int(a, b), logint(a, b), choice(x, y, ...))",
    ),
    (dict(search={"optimizer.lr": "loguniform(0, 1)"}), "search.optimizer.lr: malformed range"),
    (dict(search={"optimizer.lr": "between(1, 2)"}), "search.optimizer.lr: malformed range"),
    (dict(select="test/acc"), "select: test/acc is a test metric"),
    (dict(select="final/test/acc"), "select: final/test/acc is a test metric"),
    (dict(seeds=[5, 100]), "seeds: overlap the tune seeds (100)"),
    (dict(seeds=[1, 1]), "seeds: repeats a seed"),
    (dict(budget=0), "budget: must be an integer >= 1"),
    (dict(budget="many"), "budget: must be an integer >= 1"),
    (dict(cost_seconds=0), "cost_seconds: must be a number of seconds > 0, got 0"),
    (dict(cost_seconds="long"), "cost_seconds: must be a number of seconds > 0, got 'long'"),
    (
        dict(budgett=3),
        "budgett: unknown study key; did you mean budget? (allowed: common, workloads,",
    ),
    (dict(equal_compute="yes"), "equal_compute: got 'yes' (allowed: true, false)"),
    (
        dict(compare=[["good", "nope"]]),
        "compare: unknown arm 'nope' (allowed: a list of [arm, arm]",
    ),
    (dict(compare=[["good", "slow"]]), "compare: 'slow' is the baseline, compared already"),
    (dict(compare=[["good", "good"]]), "compare: 'good' against itself"),
    (dict(compare=[["good", "same"], ["same", "good"]]), "compare: ['same', 'good'] twice"),
    (dict(compare=["good"]), "compare: got 'good' (allowed: a list of [arm, arm] pairs"),
    (dict(compare=[]), "compare: got [] (allowed:"),
]


@pytest.mark.parametrize(
    "change,msg", BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_bad_input_is_one_line_naming_the_key(change, msg, tmp_path):
    from runner.errors import ConfigError
    from runner.study import load

    (tmp_path / "s.yaml").write_text(study_text(**change))
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "s.yaml")
    assert str(e.value).startswith(msg), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "ovr,msg",
    [
        (["optimizer.weight_decay=0.1"], "optimizer.weight_decay: is searched by the study"),
        (["seed=3"], "seed: is set by the study"),
        (["hydra.run.dir=x"], "hydra.run.dir: is set by the study"),
        (["trainer.nope=1"], "arms.slow: trainer.nope: unknown key"),
    ],
)
def test_bad_overrides_are_one_line(ovr, msg, tmp_path):
    from runner.errors import ConfigError
    from runner.study import load

    (tmp_path / "s.yaml").write_text(study_text())
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "s.yaml", ovr)
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)


def test_bad_input_through_the_cli_exits_2_before_any_run(tmp_path):
    (tmp_path / "s.yaml").write_text(study_text(seeds=[100, 1]))
    r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2
    assert (
        r.stderr == "error: seeds: overlap the tune seeds (100): the confirmation must run "
        "on fresh seeds (allowed: seeds disjoint from tune_seeds)\n"
    )
    assert not (tmp_path / "out").exists()
    (tmp_path / "s.yaml").write_text(study_text())
    r = cli(["study", "s.yaml", "optimizer.weight_decay=0.1"], cwd=tmp_path, env=ENV)
    assert r.returncode == 2 and r.stderr.startswith("error: optimizer.weight_decay: is searched")


def test_equal_compute_adds_a_baseline_arm_scaled_by_the_measured_ratio(tmp_path):
    """Timing runs (faked here: their summaries) give rdrop 2x and flood 1.05x a baseline step:
    only rdrop gets `slow@rdrop`, trained for twice the steps, in the tuning jobs."""
    from runner.study import protocol as P
    from runner.study.spec import parse_text

    text = study_text(
        arms={"slow": [], "rdrop": ["reg=[rdrop]"], "flood": ["reg=[flooding]"]},
        arm_search=None,
        equal_compute=True,
    )
    study = parse_text(tmp_path / "s.yaml", text)
    per_step = {"slow": 0.010, "rdrop": 0.020, "flood": 0.0105}
    # one round of each arm ran beside a load (time only ever gets added): the fastest counts
    loaded = {("slow", "1"): 3.0, ("rdrop", "4"): 2.0, ("flood", "0"): 1.5}
    calls = []

    class FakeRunner:
        out = tmp_path

        def start_view(self, total, label):
            assert total == 1 + 5 * 3

        def run(self, jobs, width=None):
            assert width == 1  # one process: the arms interleaved
            calls.append(jobs)
            for j in jobs:
                d = tmp_path / j.run_dir
                d.mkdir(parents=True)
                arm, rep = j.run_dir.parent.name, j.run_dir.name.removeprefix("rep-")
                sec = 0.002 if j.label == "warmup" else per_step[arm] * loaded.get((arm, rep), 1)
                n = int(next(o for o in j.overrides if "max_steps" in o).split("=")[1])
                (d / "summary.json").write_text(
                    json.dumps({"status": "completed", "steps": n, "train_seconds": n * sec})
                )

    plans = P.arm_plans(study)
    costs = P.measure_cost(study, FakeRunner(), "main", plans, P.points_for(study, plans))
    # first the warm-up alone (the baseline, cost_steps steps): its pace sets the rounds' length
    assert [j.label for j in calls[0]] == ["warmup"] and calls[0][0].run_dir.parent.name == "slow"
    assert "trainer.max_steps=200" in calls[0][0].overrides
    # then 5 interleaved rounds, each >= cost_seconds (3 s) of the baseline at 2 ms a step
    assert [j.label for j in calls[1][:3]] == ["main/slow", "main/rdrop", "main/flood"]
    assert len(calls[1]) == 5 * 3
    assert all("trainer.max_steps=1500" in j.overrides for j in calls[1])
    assert costs["rdrop"]["ratio"] == pytest.approx(2.0)
    assert costs["slow"]["ratio"] == pytest.approx(1.0)
    assert costs["flood"]["ratio"] == pytest.approx(1.05)  # not an equal-compute arm
    assert costs["slow"]["rounds"] == pytest.approx([0.01, 0.03, 0.01, 0.01, 0.01])
    assert costs["slow"]["round_steps"] == 1500
    assert set(plans) == {"slow", "rdrop", "flood", "slow@rdrop"}
    assert plans["slow@rdrop"]["forced"] == ["trainer.max_steps=120"]  # 60 steps x 2.0
    _, jobs = P.tune_jobs(study, "main", plans, P.points_for(study, plans))
    ec = [j for j in jobs if j.label == "main/slow@rdrop"]
    assert len(ec) == 2 and all("trainer.max_steps=120" in j.overrides for j in ec)
    assert all("reg=[rdrop]" not in j.overrides for j in ec)
    # the same weight_decay points as every other arm: tuned under the same budget
    wd = lambda a: [o for j in jobs if j.label == a for o in j.overrides if "weight_decay" in o]
    assert wd("main/slow@rdrop") == wd("main/slow")


@pytest.mark.parametrize("spe", [47, None])
def test_equal_compute_of_an_epoch_based_baseline_is_counted_in_steps(tmp_path, spe):
    """A baseline trained for 3 epochs, an arm measured at 1.2x its step: the equal-compute
    baseline gets 3 x 47 x 1.2 = 169 optimizer steps (47 a epoch, from the warm-up run's
    summary.json), not round(3 x 1.2) = 4 whole epochs (1.33x). A warm-up run from before
    summary.json recorded steps_per_epoch (a study resumed across that change) keeps the
    whole-epoch length it was given then, so a resumed study stays one study."""
    from runner.study import protocol as P
    from runner.study.spec import parse_text

    common = [o for o in BASE["common"] if "max_steps" not in o] + ["trainer.epochs=3"]
    study = parse_text(
        tmp_path / "s.yaml",
        study_text(
            common=common,
            arms={"slow": [], "rdrop": ["reg=[rdrop]"]},
            arm_search=None,
            equal_compute=True,
        ),
    )
    per_step = {"warmup": 0.002, "slow": 0.010, "rdrop": 0.012}

    class FakeRunner:
        out = tmp_path

        def start_view(self, total, label):
            pass

        def run(self, jobs, width=None):
            for j in jobs:
                d = tmp_path / j.run_dir
                d.mkdir(parents=True)
                n = int(next(o for o in j.overrides if "max_steps" in o).split("=")[1])
                sec = per_step["warmup" if j.label == "warmup" else j.run_dir.parent.name]
                s = {"status": "completed", "steps": n, "train_seconds": n * sec}
                if spe is not None:
                    s["steps_per_epoch"] = spe
                (d / "summary.json").write_text(json.dumps(s))

    plans = P.arm_plans(study)
    costs = P.measure_cost(study, FakeRunner(), "main", plans, P.points_for(study, plans))
    assert costs["rdrop"]["ratio"] == pytest.approx(1.2)
    want = ["trainer.max_steps=169"] if spe else ["trainer.epochs=4"]
    assert plans["slow@rdrop"]["forced"] == want
    _, jobs = P.tune_jobs(study, "main", plans, P.points_for(study, plans))
    ec = [j for j in jobs if j.label == "main/slow@rdrop"]
    assert ec and all(want[0] in j.overrides for j in ec)


def test_search_space_points_and_edges():
    import math

    from runner.errors import ConfigError
    from runner.study.space import edges, parse, trial_points, unit_points
    from runner.study.spec import _rejoin

    lr = parse("optimizer.lr", "loguniform(1e-4, 1e-2)", "search")
    eps = parse("reg.fgm.eps", "uniform(0, 2)", "arm_search.fgm")
    k = parse("reg.pgd.K", "int(1, 4)", "arm_search.pgd")
    pts = trial_points([lr], {"none": [], "fgm": [eps], "pgd": [k]}, 8, seed=0)
    assert (
        [p["optimizer.lr"] for p in pts["none"]]
        == [p["optimizer.lr"] for p in pts["fgm"]]
        == [p["optimizer.lr"] for p in pts["pgd"]]
    )
    assert pts == trial_points([lr], {"none": [], "fgm": [eps], "pgd": [k]}, 8, seed=0)
    assert pts != trial_points([lr], {"none": [], "fgm": [eps], "pgd": [k]}, 8, seed=1)
    assert sorted({p["reg.pgd.K"] for p in pts["pgd"]}) == [1, 2, 3, 4]  # both ends included
    # scrambled Sobol: the first 2^m points put one in each of 2^m strata of every dimension
    u = unit_points(8, 3, seed=0)
    for dim in range(3):
        assert sorted(int(x[dim] * 8) for x in u) == list(range(8))
    assert trial_points([lr], {"a": [eps]}, 1, 0)["a"] == [
        {"optimizer.lr": 0.001, "reg.fgm.eps": 1.0}
    ]  # the centre
    assert math.isclose(lr.value(0.5), 1e-3)  # log scale
    assert edges([lr, eps], {"optimizer.lr": 1.2e-4, "reg.fgm.eps": 1.0}) == [
        {"key": "optimizer.lr", "value": 1.2e-4, "range": "loguniform(1e-4, 1e-2)", "side": "low"}
    ]  # 1.2e-4 is 4% of the log range
    assert edges([lr, eps], {"optimizer.lr": 1e-3, "reg.fgm.eps": 1.95})[0]["side"] == "high"
    assert edges([lr], {"optimizer.lr": 1.5e-4}) == []  # 8.8% of the log range: not the edge
    assert parse("o", "choice(adamw, lion, 1e6)", "search").args == ("adamw", "lion", 1e6)
    # logint: integers, both ends reachable, k's share of the unit interval is log((k+1)/k) over
    # log((b+1)/a): 2..50 puts 10..50 (log(51/10)/log(51/2) = 50%) in half of it, not 80%
    la = parse("derived.lookahead.k", "logint(2, 50)", "arm_search.lookahead")
    grid = [la.value(i / 10000) for i in range(10000)]
    assert min(grid) == 2 and max(grid) == 50 and all(isinstance(v, int) for v in grid)
    assert sum(v >= 10 for v in grid) / len(grid) == pytest.approx(
        math.log(51 / 10) / math.log(51 / 2), abs=1e-3
    )
    assert la.value(0.0) == 2 and la.value(1.0) == 50
    assert edges([la], {"derived.lookahead.k": 50})[0]["side"] == "high"
    assert edges([la], {"derived.lookahead.k": 10}) == []
    with pytest.raises(ConfigError, match="logint needs 1 <= a < b"):
        parse("k", "logint(0, 5)", "search")
    with pytest.raises(ConfigError, match="is not an integer"):
        parse("k", "logint(1.5, 5)", "search")
    # YAML's flow mapping splits `{eps: loguniform(0.1, 3)}` at the comma: rejoined
    assert _rejoin({"eps": "loguniform(0.1", "3)": None}) == {"eps": "loguniform(0.1, 3)"}


def test_the_data_memo_changes_no_number(tmp_path):
    """Workers share one built dataset across runs: runs with input-perturbing tricks must not
    write into it (the next run would train on other data)."""
    from runner import build

    from conftest import read_rows, strip_timing, train_run

    tiny = BASE["common"] + [
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "trainer.progress=false",
        "trainer.log_every=2",
    ]
    tricks = [["reg=[noise]"], ["reg=[fgm]"], []]
    fresh = [
        strip_timing(read_rows(d))
        for d in [
            train_run(tiny + t, tmp_path / f"a{i}") and tmp_path / f"a{i}"
            for i, t in enumerate(tricks)
        ]
    ]
    build.memoize_data(True)
    try:
        shared = [
            strip_timing(read_rows(d))
            for d in [
                train_run(tiny + t, tmp_path / f"b{i}") and tmp_path / f"b{i}"
                for i, t in enumerate(tricks)
            ]
        ]
        assert len(build._DATA_MEMO) == 1  # one dataset built, reused by all three
    finally:
        build.memoize_data(False)
    assert shared == fresh


def test_help_lists_the_study_files_of_experiments(tmp_path):
    r = cli(["study", "--help"], cwd=tmp_path, env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "experiments/flooding/study.yaml  Flooding, its level b tuned" in r.stdout
    for p in sorted((ROOT / "experiments").glob("*/study.yaml")):
        assert f"experiments/{p.parent.name}/study.yaml" in r.stdout


def test_equal_compute_end_to_end(tmp_path):
    """PGD (K=3: about four passes a step) measures well above 1.1x the baseline's step: the
    study adds `slow@pgd`, trained the measured ratio times longer, tuned and confirmed like any
    arm, and judges pgd against it in a Holm family of its own."""
    from runner.study import execute
    from runner.study.spec import parse_text

    text = study_text(
        arms={"slow": [], "pgd": ["reg=[pgd]"]},
        arm_search=None,
        budget=1,
        seeds=[0, 1],
        target=None,
        equal_compute=True,
        cost_steps=20,
        cost_seconds=0.01,  # rounds of cost_steps: the tiny model's steps take ~1 ms
    )
    study = parse_text(tmp_path / "s.yaml", text)
    s = execute(study, tmp_path / "out", 1, progress=False)
    arms = s["arms"]
    assert set(arms) == {"slow", "pgd", "slow@pgd"}
    r = arms["pgd"]["cost"]["ratio"]
    assert r > 1.1 and arms["pgd"]["cost"]["source"] == "interleaved"
    assert arms["slow@pgd"]["equal_compute_of"] == "pgd"
    assert arms["slow@pgd"]["overrides"] == [f"trainer.max_steps={round(60 * r)}"]
    summ = json.loads(
        (tmp_path / "out" / arms["slow@pgd"]["final"]["run_dirs"][0] / "summary.json").read_text()
    )
    assert summ["steps"] == round(60 * r)
    ec = arms["pgd"]["equal_compute"]
    assert ec["vs"] == "slow@pgd" and ec["diff"]["p_holm"] == ec["diff"]["p"]  # a family of one
    assert arms["slow@pgd"]["final"]["n"] == 2 and len(arms["slow@pgd"]["trials"]) == 1
    cost_runs = sorted((tmp_path / "out" / "runs" / "_cost").glob("*/*/rep-*/summary.json"))
    assert len(cost_runs) == 1 + 5 * 2  # the warm-up and 5 interleaved rounds of both arms
    assert {json.loads(f.read_text())["status"] for f in cost_runs} == {"completed"}
