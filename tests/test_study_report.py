"""runner/study/report.py on a synthetic study.json with fake run dirs (metrics.jsonl): the files,
the numbers in the tables against hand computations, the edge warning, failed k/n, the tuning
table, the self-contained HTML, and with two workloads the per-workload table and the
performance profile."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scipy import stats as sps

from runner import stats
from runner.study.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"
SEEDS = [0, 1, 2, 3, 4]
# confirmation test/acc per seed: fgm clearly better, rdrop ~ equal with one failed seed
FINAL = {
    "none": [0.80, 0.82, 0.81, 0.79, 0.83],
    "fgm": [0.83, 0.84, 0.83, 0.82, 0.85],
    "rdrop": [0.81, 0.81, 0.80, None, 0.84],
}
LR_RANGE = "loguniform(1e-4, 3e-2)"


def hand_ci(x):
    n = len(x)
    m = sum(x) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))
    return m, sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def fake_run(root: Path, rel: str, final: float | None, steps: int = 3) -> str:
    d = root / rel
    d.mkdir(parents=True)
    rows = [
        {"step": 10 * i, "val/acc": (final or 0.5) * i / steps, "train/loss": 1 / i}
        for i in range(1, steps + 1)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = {"status": "completed", "test/acc": final, "steps": 30, "train_seconds": 1.5}
    if final is None:
        s = {"status": "failed", "error": "NaN loss at step 20"}
    (d / "summary.json").write_text(json.dumps(s))
    return rel


def arms_of(root: Path, w: str, shift: float = 0.0) -> dict:
    arms = {}
    for arm, vals in FINAL.items():
        vals = [None if v is None else v + shift for v in vals]
        trials = []
        for i in range(3):
            lr = [0.001, 0.0298, 0.0003][i]
            sel = None if (arm == "rdrop" and i == 2) else 0.7 + 0.05 * i * (i != 2) + shift
            trials.append(
                {
                    "index": i,
                    "params": {"optimizer.lr": lr},
                    "select_value": sel,
                    "status": "failed" if sel is None else "completed",
                    "run_dir": f"runs/{w}/{arm}/trial-{i:02d}-seed-100",
                    "run_dirs": [f"runs/{w}/{arm}/trial-{i:02d}-seed-100"],
                    "errors": ["NaN loss at step 3"] if sel is None else [],
                }
            )
        dirs = [fake_run(root, f"runs/{w}/{arm}/confirm-seed-{s}", v) for s, v in zip(SEEDS, vals)]
        ok = [(v, s) for v, s in zip(vals, SEEDS) if v is not None]
        m, h = hand_ci([v for v, _ in ok])
        arms[arm] = {
            "trials": trials,
            "chosen": {"optimizer.lr": 0.0298},
            "chosen_trial": 1,
            "edge": [{"key": "optimizer.lr", "value": 0.0298, "range": LR_RANGE, "side": "high"}]
            if arm == "fgm"
            else [],
            "final": {
                "n": len(ok),
                "mean": m,
                "ci95": [m - h, m + h],
                "values": [v for v, _ in ok],
                "seeds": [s for _, s in ok],
                "failed": len(vals) - len(ok),
                "run_dirs": dirs,
                "failed_runs": [
                    {"run_dir": d, "error": "NaN loss at step 20"}
                    for d, v in zip(dirs, vals)
                    if v is None
                ],
            },
            "cost": {
                "sec_per_step": 0.05 * (2 if arm == "fgm" else 1),
                "ratio": 2.0 if arm == "fgm" else 1.0,
                "source": "interleaved",
            },
        }
    cmp = {
        a: stats.compare_to(
            arms[a]["final"]["values"],
            arms[a]["final"]["seeds"],
            arms["none"]["final"]["values"],
            arms["none"]["final"]["seeds"],
        )
        for a in ("fgm", "rdrop")
    }
    stats.holm_verdicts(list(cmp.values()))
    for a, c in cmp.items():
        arms[a]["diff"] = {
            "mean": c["diff"],
            "ci95": [c["diff_low"], c["diff_high"]],
            "p": c["p"],
            "p_holm": c["p_holm"],
            "test": c["test"],
            "mde": c["mde"],
            "se": c["se"],
            "df": c["df"],
        }
        arms[a]["verdict"] = c["verdict"]
    arms["none"]["diff"], arms["none"]["verdict"] = None, "baseline"
    return arms


def study_of(root: Path, workloads=("main",)) -> dict:
    s = {
        "name": "fake",
        "description": "a synthetic study",
        "baseline": "none",
        "select": "val/acc",
        "metric": "test/acc",
        "higher_better": True,
        "select_higher_better": True,
        "budget": 3,
        "tune_seeds": [100],
        "seeds": SEEDS,
        "commit": "abc123",
        "dirty": False,
        "workloads": list(workloads),
    }
    if len(workloads) == 1:
        s["arms"] = arms_of(root, workloads[0])
    else:
        s["by_workload"] = {
            w: {"arms": arms_of(root, w, shift=0.05 * i)} for i, w in enumerate(workloads)
        }
        # on the second workload rdrop is best: 0.99 vs fgm's mean
        arms = s["by_workload"][workloads[1]]["arms"]
        f = arms["rdrop"]["final"]
        f["ci95"] = [0.99 - (f["mean"] - f["ci95"][0]), 0.99 + (f["ci95"][1] - f["mean"])]
        f["values"] = [v + 0.99 - f["mean"] for v in f["values"]]
        f["mean"] = 0.99
    return json.loads(json.dumps(s))  # as read back from study.json


def table(md: str, first_header: str) -> list[list[str]]:
    lines = md.splitlines()
    i = next(j for j, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    out = []
    for line in lines[i:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split(" | ")])
    return [out[0]] + out[2:]


def test_one_workload_report(tmp_path):
    study = study_of(tmp_path)
    files = write_report(study, tmp_path)
    names = sorted(f.name for f in files)
    assert names == [
        "curves.png",
        "final.png",
        "report.html",
        "report.md",
        "summary.csv",
        "tuning.png",
    ]
    for f in files:
        assert f.is_file()
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG
    md = (tmp_path / "report.md").read_text()
    # opens with the headline verdicts
    h2 = [line for line in md.splitlines() if line.startswith("## ")]
    assert h2[0] == "## Verdicts"
    fgm = study["arms"]["fgm"]
    assert fgm["verdict"] == "better"
    d = fgm["diff"]
    assert (
        f"- **fgm** is better than none: {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, "
        f"{d['ci95'][1]:+.4f}] test/acc (p_holm {d['p_holm']:.3f}, paired t, n 5)"
    ) in md
    assert "- **rdrop**: no significant difference from none" in md
    assert f"detects about {study['arms']['rdrop']['diff']['mde']:.4f} or more" in md
    rows = table(md, "arm")
    head, body = rows[0], {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert head[:4] == ["arm", "chosen values", "edge warning", "n"]
    assert list(body) == ["none (baseline)", "fgm", "rdrop"]
    for arm, key in (("none", "none (baseline)"), ("fgm", "fgm"), ("rdrop", "rdrop")):
        m, h = hand_ci([v for v in FINAL[arm] if v is not None])
        assert body[key]["test/acc (mean ± 95% CI)"] == f"{m:.4f} ± {h:.4f}"
    # paired p of fgm by hand, Welch for rdrop (a seed failed), Holm over the two
    p_fgm = sps.ttest_rel(FINAL["fgm"], FINAL["none"]).pvalue
    p_rd = sps.ttest_ind([0.81, 0.81, 0.80, 0.84], FINAL["none"], equal_var=False).pvalue
    assert p_fgm < 0.001 and body["fgm"]["p"] == "<0.001" and body["fgm"]["test"] == "paired t"
    assert body["rdrop"]["p"] == f"{p_rd:.3f}"
    assert body["rdrop"]["test"] == "Welch t"
    assert body["rdrop"]["p_holm"] == f"{max(2 * min(p_fgm, p_rd), p_rd):.3f}"
    assert body["fgm"]["edge warning"] == (
        f"optimizer.lr=0.0298 at the high edge of {LR_RANGE}: widen the range"
    )
    assert body["rdrop"]["edge warning"] == ""
    assert body["rdrop"]["failed k/n"] == "1/5" and body["fgm"]["failed k/n"] == "0/5"
    assert body["fgm"]["cost ×"] == "2.00×" and body["fgm"]["verdict"] == "better"
    assert body["fgm"]["chosen values"] == "optimizer.lr=0.0298"
    assert body["fgm"]["MDE"] == f"{d['mde']:.4f}"
    # the tuning table: every trial, failed ones included, the chosen one marked
    tune = table(md, "arm | trial")
    assert len(tune) == 1 + 9
    failed = [r for r in tune[1:] if r[0] == "rdrop" and r[1] == "2"][0]
    assert failed[tune[0].index("status")] == "failed" and "NaN loss" in failed[-1]
    assert all(r[tune[0].index("chosen")] == ("✓" if r[1] == "1" else "") for r in tune[1:])
    assert "Failed confirmation runs" in md and "runs/main/rdrop/confirm-seed-3" in md
    assert "## How to read this" in md and "docs/study.md" in md
    # summary.csv holds the same numbers
    rows = {r["arm"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert float(rows["fgm"]["p_holm"]) == pytest.approx(d["p_holm"])
    assert float(rows["rdrop"]["mean"]) == pytest.approx(sum([0.81, 0.81, 0.80, 0.84]) / 4)
    assert rows["rdrop"]["failed"] == "1" and rows["none"]["verdict"] == "baseline"
    assert rows["fgm"]["edge"].startswith("optimizer.lr=0.0298 at the high edge")
    # the HTML page: one file, images embedded, each table in a box that scrolls itself
    page = (tmp_path / "report.html").read_text()
    # the plots as interactive SVG (runner.report_html), as compare's; no PNG needed
    assert page.count('<svg class="plot"') == 3 and 'src="final.png"' not in page
    assert page.count('<div class="box"><table>') == page.count("<table>") == 3
    assert ".box{max-width:100%;overflow-x:auto" in page and "max-width:1240px" in page
    assert '<td class="v-better">better</td>' in page
    # figures never break inside a cell; long text (the edge warning) wraps in its own cell
    assert "td{white-space:nowrap}" in page and '<td class="w">optimizer.lr=0.0298 at the' in page


def test_best_so_far_and_learning_band(tmp_path):
    from runner.study.report import band, best_so_far

    assert best_so_far([0.5, None, 0.4, 0.7, 0.6], True) == [0.5, 0.5, 0.5, 0.7, 0.7]
    assert best_so_far([None, 2.0, 1.0, 3.0], False) == [None, 2.0, 1.0, 1.0]
    dirs = [tmp_path / fake_run(tmp_path, f"r{i}", v) for i, v in enumerate([0.6, 0.9, 0.75])]
    steps, mean, lo, hi = band(dirs, "val/acc")
    assert steps == [10, 20, 30]
    m, h = hand_ci([0.6, 0.9, 0.75])
    assert mean[2] == pytest.approx(m) and hi[2] - mean[2] == pytest.approx(h)


def test_two_workloads_profile_and_per_workload_table(tmp_path):
    study = study_of(tmp_path, ("mlp", "cnn"))
    # an equal-compute baseline on mlp only (fgm cost more there), scoring above every arm: a
    # comparison for fgm, not a contender; counted, it would be best on mlp and absent on cnn
    mlp = study["by_workload"]["mlp"]["arms"]
    ec = mlp["none@fgm"] = json.loads(json.dumps(mlp["none"]))
    ec.update(equal_compute_of="fgm", verdict="equal-compute baseline of fgm")
    ec["final"]["mean"] = 0.999
    files = write_report(study, tmp_path)
    names = {f.name for f in files}
    assert {
        "profile.png",
        "final_mlp.png",
        "final_cnn.png",
        "tuning_cnn.png",
        "curves_mlp.png",
    } <= names
    md = (tmp_path / "report.md").read_text()
    assert "## Workload mlp" in md and "## Workload cnn" in md and "## Across workloads" in md
    per = table(md, "arm | mlp: test/acc · verdict")
    by = {r[0]: r for r in per[1:]}
    m, h = hand_ci(FINAL["fgm"])
    assert by["fgm"][1] == f"{m:.4f} ± {h:.4f} · better"
    # profile by hand: mlp: fgm best (ratios none 0.846/0.81, rdrop 0.846/0.815);
    # cnn: rdrop best at 0.99, fgm 0.99/0.884 = 1.12, none 0.99/0.86 = 1.151
    fgm_mlp = sum(FINAL["fgm"]) / 5
    none_mlp = sum(FINAL["none"]) / 5
    rd_mlp = sum([0.81, 0.81, 0.80, 0.84]) / 4
    prof = table(md, "arm | τ = 1")
    assert prof[0] == ["arm", "τ = 1", "τ = 1.01", "τ = 1.02", "τ = 1.05", "τ = 1.1"]
    got = {r[0]: [float(x) for x in r[1:]] for r in prof[1:]}
    expect = {}
    cnn = {"none": none_mlp + 0.05, "fgm": fgm_mlp + 0.05, "rdrop": 0.99}
    for arm, v in (("none", none_mlp), ("fgm", fgm_mlp), ("rdrop", rd_mlp)):
        r = (fgm_mlp / v, 0.99 / cnn[arm])
        expect[arm] = [sum(x <= t + 1e-12 for x in r) / 2 for t in (1, 1.01, 1.02, 1.05, 1.1)]
    assert got == {a: pytest.approx(e) for a, e in expect.items()}  # none@fgm not in it
    assert got["fgm"][0] == 0.5 and got["rdrop"][0] == 0.5
    # the seed bootstrap's 95% interval of each fraction holds the point value; none@fgm out
    assert "How much of that order is seed noise: 1,000 resamples" in md
    band = table(md.split("seed noise")[1], "arm | τ = 1")
    assert [r[0] for r in band[1:]] == ["fgm", "none", "rdrop"]
    for r in band[1:]:
        for cell, point in zip(r[1:], got[r[0]]):
            lo, hi = map(float, cell.split("–"))
            assert lo <= point <= hi and {lo, hi} <= {0.0, 0.5, 1.0}
    # fgm ahead of every arm on every seed of mlp, rdrop on every seed of cnn: at tau = 1 every
    # resample gives each of them one workload of two, and none neither
    assert [r[1] for r in band[1:]] == ["0.50–0.50", "0.00–0.00", "0.50–0.50"]
    page = (tmp_path / "report.html").read_text()
    assert page.count('<svg class="plot"') == len([n for n in names if n.endswith(".png")])
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["workload"], r["arm"]) for r in rows][:5] == [
        ("mlp", "none"),
        ("mlp", "fgm"),
        ("mlp", "rdrop"),
        ("mlp", "none@fgm"),
        ("cnn", "none"),
    ]


def test_analysis_and_equal_compute_sections(tmp_path):
    study = study_of(tmp_path)
    arms = study["arms"]
    arms["none@fgm"] = {
        **json.loads(json.dumps(arms["none"])),
        "equal_compute_of": "fgm",
        "verdict": None,
    }
    arms["fgm"]["equal_compute"] = {
        "vs": "none@fgm",
        "verdict": "no significant difference",
        "diff": {
            "mean": 0.004,
            "ci95": [-0.01, 0.018],
            "p": 0.4,
            "p_holm": 0.4,
            "test": "paired t",
            "mde": 0.02,
        },
    }
    rounds = {"none": [0.0021, 0.0020, 0.0034], "fgm": [0.0043, 0.0040, 0.0041]}
    for a, r in rounds.items():  # the timing rounds (ms): fgm's fastest is 2.0x the baseline's
        arms[a]["cost"] = {"sec_per_step": min(r), "ratio": min(r) / 0.002, "rounds": r}
        arms[a]["cost"].update(round_steps=1500, source="interleaved")
    (tmp_path / "analysis.md").write_text(
        "Flooding level b against the train loss.\n\n| b | loss |\n|---|---|\n| 0.1 | 0.2 |\n"
    )
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    cost = table(md, "arm | ms per step (fastest round)")
    assert cost[0][2] == "rounds, ms per step (1500 steps each)"
    assert cost[1] == ["none", "2", "2.1, 2, 3.4", "1.00×", "–"]
    assert cost[2] == ["fgm", "4", "4.3, 4, 4.1", "2.00×", "none@fgm"]
    assert "## Against the baseline given the same measured compute" in md
    ec = table(md, "arm | vs (baseline, same compute)")
    assert ec[1][:2] == ["fgm", "none@fgm"] and ec[1][3] == "+0.0040 [-0.0100, +0.0180]"
    assert "no significant difference from none@fgm" in md and "(same measured compute)" in md
    assert md.rstrip().endswith("| 0.1 | 0.2 |") and "## Analysis" in md
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Analysis</h2>" in page and "<td>0.1</td>" in page


def test_time_to_target_and_an_arm_that_failed_everywhere(tmp_path):
    study = study_of(tmp_path)
    arms = study["arms"]
    study["target"] = {"key": "val/acc", "value": 0.8}
    arms["fgm"]["target"] = {
        "key": "val/acc",
        "value": 0.8,
        "steps": [30, 20, None, 30, 30],
        "seconds": [1.5, 1.0, None, 1.5, 1.5],
        "reached": 4,
        "n": 5,
        "mean_steps": 27.5,
        "mean_seconds": 1.375,
    }
    arms["none"]["target"] = {
        "key": "val/acc",
        "value": 0.8,
        "steps": [None] * 5,
        "seconds": [None] * 5,
        "reached": 0,
        "n": 5,
        "mean_steps": None,
        "mean_seconds": None,
    }
    # every trial and confirmation of rdrop failed: no chosen config, nothing to average
    rd = arms["rdrop"]
    for t in rd["trials"]:
        t.update(select_value=None, status="failed", errors=["NaN loss at step 1"])
    rd.update(
        chosen=None,
        chosen_trial=None,
        verdict=stats.TOO_FEW,
        diff={
            "mean": None,
            "ci95": [None, None],
            "p": None,
            "p_holm": None,
            "test": "",
            "mde": None,
        },
    )
    rd["final"] = {
        "n": 0,
        "mean": None,
        "ci95": [None, None],
        "values": [],
        "seeds": [],
        "failed": 0,
        "run_dirs": [],
        "failed_runs": [],
    }
    files = write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    rows = table(md, "arm")
    body = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert rows[0][-1] == "time to val/acc 0.8"
    assert body["fgm"]["time to val/acc 0.8"] == "28 steps, 1.38 s (4/5)"
    assert body["none (baseline)"]["time to val/acc 0.8"] == "not reached (0/5)"
    assert body["rdrop"]["verdict"] == stats.TOO_FEW and body["rdrop"]["chosen values"] == "–"
    assert body["rdrop"]["test/acc (mean ± 95% CI)"] == "–"
    assert "**rdrop** against none: too few runs" in md
    assert {f.name for f in files} >= {"final.png", "tuning.png"}
    rows = {r["arm"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert rows["fgm"]["target_mean_steps"] == "27.5" and rows["rdrop"]["mean"] == ""


def test_wandb_verdict_run_holds_the_study_table_and_headline(tmp_path, monkeypatch):
    """`tricks study --wandb`: one offline W&B run (job type verdict) under DIR whose table has a
    row per arm with its verdict, and whose summary holds the headline; read back from the run's
    own records, as the compare --wandb test does."""
    from test_report import _records

    from runner.cli import _study_wandb
    from runner.study.protocol import headline

    study = study_of(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    _study_wandb(study, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    recs = _records(runs[0])
    info = next(r["run"] for r in recs if r["type"] == "run")
    assert info["job_type"] == "verdict" and info["run_group"] == "fake"
    summary = {}
    for r in recs:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["headline"] == "; ".join(headline(study))
    item = next(r["history"]["item"] for r in recs if r["type"] == "history")
    table = json.loads((runs[0] / "files" / item["verdict.path"]).read_text())
    assert table["columns"] == ["workload", "arm", "test/acc", "diff", "p_holm", "verdict"]
    by_arm = {row[1]: row for row in table["data"]}
    assert set(by_arm) == set(study["arms"])
    assert all(by_arm[a][5] == study["arms"][a]["verdict"] for a in by_arm)


def test_pieces_made_on_two_machines_name_each_machine(tmp_path):
    """A study run in pieces on two machines (the same commit gives different floats on CPUs
    with different vector units) says which machine made which workload; a study.json from
    before machines were recorded says 'not recorded'."""
    study = study_of(tmp_path, ("mlp", "cnn"))
    amd = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "cores": 2, "torch": "2.13.0"}
    xeon = {**amd, "cpu": "Intel Xeon", "cpu_capability": "AVX512", "gpu": "NVIDIA H100"}
    study["machine"] = xeon
    for w, m in (("mlp", amd), ("cnn", xeon)):
        run = {"commit": "abc123", "dirty": False, "finished": "2026-12-03 10:00 UTC", "machine": m}
        study["by_workload"][w]["run"] = run
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    head = "Commit abc123; machine: Intel Xeon (AVX512), 2 cores, torch 2.13.0, GPU NVIDIA H100."
    assert head in md
    assert "mlp at commit abc123, finished 2026-12-03 10:00 UTC on AMD EPYC (AVX2), 2 cores" in md
    assert "cnn at commit abc123, finished 2026-12-03 10:00 UTC on Intel Xeon (AVX512)" in md
    del study["machine"]
    write_report(study, tmp_path)
    assert "Commit abc123; machine: not recorded." in (tmp_path / "report.md").read_text()


def test_a_study_started_more_than_once_names_every_commit(tmp_path):
    """A study resumed at a later commit (or on another machine) says so in its first lines:
    each start's commit, dirty flag and time, and the machine where it differs; one start
    keeps the one-commit line."""
    study = study_of(tmp_path, ("main",))
    amd = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "cores": 2, "torch": "2.13.0"}
    xeon = {**amd, "cpu": "Intel Xeon", "cpu_capability": "AVX512"}
    study["machine"] = amd
    study["commit"], study["dirty"] = "bbb222", False
    study["invocations"] = [
        {"commit": "aaa111", "dirty": True, "started": "2026-12-07 05:07 UTC", "machine": xeon},
        {"commit": "bbb222", "dirty": False, "started": "2026-12-07 07:08 UTC", "machine": amd},
    ]
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert (
        "Started 2 times on this DIR, each start running only the runs the earlier ones left, at "
        "commits aaa111 (dirty) (2026-12-07 05:07 UTC, Intel Xeon (AVX512), 2 cores, torch "
        "2.13.0), bbb222 (2026-12-07 07:08 UTC); machine: AMD EPYC (AVX2), 2 cores, torch 2.13.0."
    ) in md
    assert "Commit bbb222" not in md
    study["invocations"] = study["invocations"][1:]
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Commit bbb222; machine: AMD EPYC (AVX2)" in md and "Started" not in md


def test_compare_pairs_come_in_the_study_files_order(tmp_path):
    """compare: [[rdrop, fgm], [fgm, rdrop2]] is listed so, whatever the arms' order."""
    from runner.study.report import versus_pairs, versus_table

    study = study_of(tmp_path)
    arms = study["arms"]
    d = {"mean": 0.01, "ci95": [-0.01, 0.03], "p": 0.3, "p_holm": 0.3, "test": "paired t"}
    arms["rdrop2"] = json.loads(json.dumps(arms["rdrop"]))
    arms["fgm"]["versus"] = [{"vs": "rdrop2", "diff": d, "verdict": "no significant difference"}]
    arms["rdrop"]["versus"] = [{"vs": "fgm", "diff": d, "verdict": "no significant difference"}]
    study["compare"] = [["rdrop", "fgm"], ["fgm", "rdrop2"]]
    assert [(a, v["vs"]) for a, v in versus_pairs(study, arms)] == [
        ("rdrop", "fgm"),
        ("fgm", "rdrop2"),
    ]
    head, rows = versus_table(study, arms)
    assert [r[:2] for r in rows] == [["rdrop", "fgm"], ["fgm", "rdrop2"]]
    assert rows[0][4:9] == ["+0.0100 [-0.0100, +0.0300]", "0.300", "0.300", "paired t", "–"]


ANALYSIS = """
from pathlib import Path


def analyse(study, study_dir):
    n = sum(1 for _ in Path(study_dir, "runs").rglob("metrics.jsonl"))
    return f"runs read: {n}"
"""


def test_the_analysis_is_kept_where_its_runs_are_not(tmp_path):
    """A committed study dir holds no runs/: --report-only there keeps the analysis written where
    the runs were (it would read none and print n/a); it is re-made where every run is, and made
    where there is none yet."""
    from runner.study.protocol import make_report

    study = study_of(tmp_path)
    for a in study["arms"].values():
        for t in a["trials"]:
            (tmp_path / t["run_dir"]).mkdir(parents=True, exist_ok=True)
    (tmp_path / "analysis.py").write_text(ANALYSIS)
    study["analysis"] = str(tmp_path / "analysis.py")
    make_report(study, tmp_path)
    assert (tmp_path / "analysis.md").read_text() == "runs read: 15\n"
    (tmp_path / "analysis.md").write_text("runs read: 14\n")  # stale: every run is here
    make_report(study, tmp_path)
    assert (tmp_path / "analysis.md").read_text() == "runs read: 15\n"
    import shutil

    shutil.rmtree(tmp_path / "runs" / "main" / "fgm")  # one arm's runs gone
    make_report(study, tmp_path)
    assert (tmp_path / "analysis.md").read_text() == "runs read: 15\n"
    assert "runs read: 15" in (tmp_path / "report.md").read_text()
    (tmp_path / "analysis.md").unlink()  # none yet: made from the runs there are
    make_report(study, tmp_path)
    assert (tmp_path / "analysis.md").read_text() == "runs read: 10\n"


def test_a_note_where_arms_were_tuned_over_different_numbers_of_keys(tmp_path):
    study = study_of(tmp_path)
    for a, keys in (("none", 1), ("fgm", 2), ("rdrop", 1)):
        study["arms"][a]["space"] = {f"k{i}": "uniform(0, 1)" for i in range(keys)}
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Tuned keys per arm, each with the same 3 trials: none 1, fgm 2, rdrop 1." in md
    study["arms"]["fgm"]["space"] = {"k0": "uniform(0, 1)"}  # the same number: no note
    write_report(study, tmp_path)
    assert "Tuned keys per arm" not in (tmp_path / "report.md").read_text()


def test_a_tie_on_the_selection_metric_is_named_with_its_rule():
    from runner.study.report import ties_note

    study = {"select": "val/acc", "baseline": "a"}
    arms = {
        "a": {"trials": [{"index": i, "select_value": v} for i, v in enumerate([0.9, 1.0, 1.0])]},
        "b": {"trials": [{"index": i, "select_value": v} for i, v in enumerate([0.9, 0.8])]},
    }
    note = ties_note(study, arms)
    assert note.startswith("Ties on val/acc: a: trials 1, 2 at 1.0000.")
    assert "the earlier trial" in note and "b:" not in note
    assert ties_note(study, {"b": arms["b"]}) is None
