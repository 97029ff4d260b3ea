"""`tricks compare`: statistics against hand computations on synthetic run directories, grouping,
failed runs, report files, and the CLI end to end on a real tiny sweep."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from scipy import stats

from runner import compare
from runner.errors import ConfigError
from runner.runs import load_run_dir
from tests.conftest import FAST, SGD, cli, make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

A = [0.80, 0.82, 0.81, 0.79, 0.83]  # adamw, seeds 0..4
B = [0.70, 0.75, 0.72]  # sgd, seeds 0..2 -> seeds differ from A: Welch
T975 = {4: 2.7764451051977987, 2: 4.302652729749464}  # t quantiles from a table


def hand_mean_sd(x):
    m = sum(x) / len(x)
    return m, math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    i = 0
    for s, v in enumerate(A):
        make_run(root, str(i), v, seed=s, summary_extra={"samples_per_sec": 1000.0 + s})
        i += 1
    for s, v in enumerate(B):
        make_run(
            root,
            str(i),
            v,
            seed=s,
            optimizer=SGD,
            summary_extra={"samples_per_sec": 500.0, "peak_mem_bytes": 50 * 2**20},
        )
        i += 1
    make_run(root, str(i), None, seed=3, optimizer=SGD, status="failed")
    make_run(root, str(i + 1), None, seed=4, optimizer=SGD, write_summary=False)
    return root


def test_statistics_match_hand_computation(sweep):
    res = compare.analyse(compare.load_runs([str(sweep)]), metric="test/acc")
    by = {g.label: g for g in res.groups}
    assert set(by) == {"optimizer=adamw", "optimizer=sgd"}
    a, b = by["optimizer=adamw"].stats, by["optimizer=sgd"].stats
    for s, x in ((a, A), (b, B)):
        m, sd = hand_mean_sd(x)
        n = len(x)
        assert s["n"] == n
        assert s["mean"] == pytest.approx(m, abs=1e-12)
        assert s["std"] == pytest.approx(sd, abs=1e-12)
        assert s["ci95"] == pytest.approx(T975[n - 1] * sd / math.sqrt(n), rel=1e-9)
        assert s["best"] == max(x)
    # Welch by hand: t = (mb - ma) / sqrt(vb/nb + va/na), Welch-Satterthwaite dof
    ma, sa = hand_mean_sd(A)
    mb, sb = hand_mean_sd(B)
    va, vb = sa**2 / len(A), sb**2 / len(B)
    se = math.sqrt(va + vb)
    t = (mb - ma) / se
    df = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))
    p = 2 * stats.t.sf(abs(t), df)
    assert res.baseline.label == "optimizer=adamw"
    assert b["test"] == "Welch t"
    assert b["diff"] == pytest.approx(mb - ma, abs=1e-12)
    assert b["p"] == pytest.approx(p, rel=1e-9)
    h = stats.t.ppf(0.975, df) * se
    assert b["diff_low"] == pytest.approx(mb - ma - h, rel=1e-9)
    assert b["diff_high"] == pytest.approx(mb - ma + h, rel=1e-9)
    assert p < 0.05 and b["verdict"] == "worse"
    assert a["verdict"] == "baseline"
    # cost relative to the baseline
    assert a["samples_per_sec"] == pytest.approx(1002.0)
    assert b["samples_per_sec_ratio"] == pytest.approx(500 / 1002)
    assert b["cost_ratio"] == pytest.approx(1002 / 500)
    assert b["peak_mem_bytes_ratio"] == pytest.approx(0.5)
    assert [g.label for g in res.groups] == ["optimizer=adamw", "optimizer=sgd"]  # ranked


def test_paired_by_seed_when_seeds_match(tmp_path):
    root = tmp_path / "s"
    C = [0.81, 0.84, 0.82, 0.80, 0.85]  # same seeds as A: paired differences
    for s, (va, vc) in enumerate(zip(A, C)):
        make_run(root, f"a{s}", va, seed=s)
        make_run(root, f"c{s}", vc, seed=s, optimizer=SGD)
    res = compare.analyse(compare.load_runs([str(root)]), baseline="optimizer=adamw")
    c = next(g for g in res.groups if g.label == "optimizer=sgd").stats
    d = [y - x for x, y in zip(A, C)]
    md, sdd = hand_mean_sd(d)
    t = md / (sdd / math.sqrt(5))
    assert c["test"] == "paired t"
    assert c["diff"] == pytest.approx(md, abs=1e-12)
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-9)
    assert c["diff_high"] - c["diff"] == pytest.approx(T975[4] * sdd / math.sqrt(5), rel=1e-9)
    assert c["verdict"] == "better"  # +0.014 on every seed, tiny spread


def test_no_significant_difference_and_too_few_runs(tmp_path):
    root = tmp_path / "s"
    for s, v in enumerate([0.5, 0.7, 0.6]):
        make_run(root, f"a{s}", v, seed=s)
    for s, v in enumerate([0.55, 0.62, 0.68]):
        make_run(root, f"b{s}", v, seed=s + 10, optimizer=SGD)
    make_run(root, "c0", 0.9, seed=0, optimizer={**SGD, "lr": 0.5})
    res = compare.analyse(compare.load_runs([str(root)]))
    by = {g.label: g.stats for g in res.groups}
    assert by["optimizer=sgd optimizer.lr=0.1"]["verdict"] == "no significant difference"
    assert by["optimizer=sgd optimizer.lr=0.5"]["verdict"].startswith("too few runs")


def test_grouping_by_differing_keys_seed_and_logging_ignored(tmp_path):
    root = tmp_path / "s"
    make_run(
        root,
        "0",
        0.8,
        seed=0,
        config_extra={"logger._target_": "x.Wandb", "trainer.progress": True},
    )
    make_run(root, "1", 0.7, seed=1, config_extra={"trainer.log_every": 5})
    make_run(root, "2", 0.6, seed=0, optimizer=SGD)
    make_run(root, "3", 0.5, seed=1, optimizer={**SGD, "lr": 0.01})
    make_run(
        root,
        "4",
        0.4,
        seed=0,
        reg={"rdrop": {"_target_": "runner.tricks.rdrop.RDrop", "alpha": 4.0}},
    )
    runs = compare.load_runs([str(root)])
    keys = compare.differing_keys(runs)
    # options stand for the keys they set; lr varies within sgd, so it stays; seed/logging never
    assert keys == ["optimizer", "reg", "optimizer.lr"]
    groups = compare.group_runs(runs, keys)
    labels = sorted(compare.label_of(k) for k in groups)
    assert labels == [
        "optimizer=adamw reg=[rdrop] optimizer.lr=0.01",
        "optimizer=adamw reg=none optimizer.lr=0.01",
        "optimizer=sgd reg=none optimizer.lr=0.01",
        "optimizer=sgd reg=none optimizer.lr=0.1",
    ]
    first = next(
        v for k, v in groups.items() if compare.label_of(k).startswith("optimizer=adamw reg=none")
    )
    assert sorted(r.seed for r in first) == [0, 1]


def test_default_baseline_is_the_group_without_a_trick(tmp_path):
    root = tmp_path / "s"
    rd = {"rdrop": {"_target_": "runner.tricks.rdrop.RDrop", "alpha": 4.0}}
    make_run(root, "0", 0.9, seed=0, reg=rd)  # first, but uses a trick
    make_run(root, "1", 0.8, seed=0)
    res = compare.analyse(compare.load_runs([str(root)]))
    assert res.baseline.label == "reg=none"
    assert "without a trick" in res.baseline_reason
    res = compare.analyse(compare.load_runs([str(root)]), baseline="reg=[rdrop]")
    assert res.baseline.label == "reg=[rdrop]"
    from rich.console import Console

    con = Console(record=True, width=200)
    compare.print_table(res, con)
    text = con.export_text()
    assert "reg=[rdrop] (baseline)" in text and "reg=none" in text  # brackets are not markup


def test_bad_baseline_and_metric_are_one_line_errors(sweep):
    runs = compare.load_runs([str(sweep)])
    with pytest.raises(
        ConfigError,
        match=r"--baseline: no group has optimizer=lion "
        r"\(allowed: adamw, sgd\)",
    ):
        compare.analyse(runs, baseline="optimizer=lion")
    with pytest.raises(ConfigError, match=r"--baseline: unknown key 'optimiser'; did you mean"):
        compare.analyse(runs, baseline="optimiser=adamw")
    with pytest.raises(ConfigError, match="--baseline: expected KEY=VALUE"):
        compare.analyse(runs, baseline="adamw")
    ok = [r for r in runs if r.status == "completed"]
    with pytest.raises(
        ConfigError, match=r"--metric: no run has 'tset/acc'; did you mean test/acc\? \(allowed: .*"
    ):
        compare.analyse(ok, metric="tset/acc")
    with pytest.raises(ConfigError, match="no such file"):
        compare.load_runs([str(sweep / "nope")])


def test_failed_and_unfinished_runs_are_listed_not_averaged(sweep, tmp_path):
    res = compare.analyse(compare.load_runs([str(sweep)]))
    assert sum(g.stats["n"] for g in res.groups) == len(A) + len(B)
    reasons = {Path(r.path).name: why for r, why in res.excluded}
    assert reasons == {
        "8": "failed: NaN loss at step 4",
        "9": "unfinished: no summary.json (still running, or killed)",
    }
    md = compare.markdown(res)
    assert "Failed, unfinished or excluded runs" in md and "NaN loss at step 4" in md


def test_lower_is_better_metric_ranks_ascending(sweep):
    res = compare.analyse(compare.load_runs([str(sweep)]), metric="test/loss")
    assert not res.higher_better
    assert [g.label for g in res.groups] == ["optimizer=adamw", "optimizer=sgd"]
    sgd = res.groups[1].stats
    assert sgd["diff"] > 0 and sgd["verdict"] == "worse"
    assert sgd["best"] == pytest.approx(1 - max(B))


def test_report_files(sweep, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    out = tmp_path / "report"
    code = compare.main([str(sweep)], metric="test/acc", out=str(out))
    assert code == 0
    for name in (
        "report.md",
        "report.html",
        "summary.csv",
        "final.png",
        "curves.png",
        "train_loss.png",
    ):
        assert (out / name).is_file(), name
    for png in ("final.png", "curves.png", "train_loss.png"):
        assert (out / png).read_bytes()[:8] == PNG_SIGNATURE
        img = mpimg.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    page = (out / "report.html").read_text()
    assert '<table id="summary">' in page
    assert "optimizer=adamw (baseline)" in page and "optimizer=sgd" in page
    assert page.count('<svg class="plot"') == 3 and "<img" not in page  # one offline file
    m, _ = hand_mean_sd(A)
    assert f"{m:.4f}" in page
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["group"] for r in rows] == ["optimizer=adamw", "optimizer=sgd"]
    assert float(rows[1]["mean"]) == pytest.approx(sum(B) / 3)
    assert rows[0]["baseline"] == "True" and rows[1]["verdict"] == "worse"
    md = (out / "report.md").read_text()
    assert "| 1 | optimizer=adamw (baseline) | 5 |" in md
    assert "![test/acc per group](final.png)" in md


def test_learning_curve_band_is_mean_and_t_ci(tmp_path):
    root = tmp_path / "s"
    runs = [
        load_run_dir(make_run(root, str(i), c[-1], seed=i, curve=c))
        for i, c in enumerate([[0.2, 0.4], [0.4, 0.6], [0.3, 0.8]])
    ]
    steps, mean, lo, hi = compare._band(runs, "val/acc")
    assert steps == [2, 4]
    m, sd = hand_mean_sd([0.4, 0.6, 0.8])
    assert mean[1] == pytest.approx(m)
    assert hi[1] - mean[1] == pytest.approx(T975[2] * sd / math.sqrt(3))


def test_wandb_source_offline_is_one_line_error(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ConfigError, match=r"^wandb:me/proj: WANDB_MODE=offline"):
        compare.load_runs(["wandb:me/proj"])
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.setenv("NETRC", "/nonexistent/.netrc")
    with pytest.raises(ConfigError, match="not logged in to W&B"):
        compare.load_runs(["wandb:me/proj/sweep1"])
    with pytest.raises(ConfigError, match="expected wandb:ENTITY/PROJECT"):
        compare.load_runs(["wandb:justone"])


def test_wandb_source_reads_runs_through_the_api(monkeypatch):
    """The adapter from the W&B public API (faked here: no network) to runs."""
    import wandb

    from runner.log import wandb as wb

    class FakeRun:
        def __init__(self, i, opt, seed, acc, state="finished"):
            self.id, self.state = f"r{i}", state
            self.config = {
                "_wandb": {},
                "seed": seed,
                "optimizer._target_": opt,
                "optimizer.lr": 0.01,
                "choices.optimizer": opt.split(".")[-1].lower(),
                "logger.project": "p",
            }
            self.summary = {
                "_runtime": 3,
                "test/acc": acc,
                "status": "completed",
                "samples_per_sec": 100.0,
            }
            if state == "crashed":
                self.summary = {"_runtime": 1}

        def scan_history(self):
            return [{"_step": 0, "step": 2, "val/acc": 0.5}]

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def runs(self, path, filters=None):
            assert path == "me/proj" and filters == {"group": "g1"}
            return [
                FakeRun(0, "torch.optim.AdamW", 0, 0.8),
                FakeRun(1, "torch.optim.AdamW", 1, 0.9),
                FakeRun(2, "torch.optim.SGD", 0, 0.6),
                FakeRun(3, "torch.optim.SGD", 1, 0.7),
                FakeRun(4, "torch.optim.SGD", 2, 0.0, state="crashed"),
            ]

    monkeypatch.setattr(wb, "has_api_key", lambda url=None: True)
    monkeypatch.setattr(wb, "reachable", lambda url=None, timeout=3.0: True)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", FakeApi)
    res = compare.analyse(compare.load_runs(["wandb:me/proj/g1"]))
    assert {g.label: g.stats["n"] for g in res.groups} == {"optimizer=adamw": 2, "optimizer=sgd": 2}
    assert res.groups[0].stats["mean"] == pytest.approx(0.85)
    assert [(r.path, why) for r, why in res.excluded] == [("wandb:me/proj/r4", "failed")]
    assert res.groups[0].runs[0].rows == [{"step": 2, "val/acc": 0.5}]


@pytest.mark.slow
def test_cli_end_to_end_on_a_real_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli(
        ["train", "-m", "optimizer=adamw,sgd", "seed=0,1", *FAST, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "rep"
    r = cli(["compare", str(sweep), "--out", str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "baseline: optimizer=adamw (default: the first group)" in r.stdout
    assert "optimizer=sgd" in r.stdout
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert sorted((x["group"], x["n"]) for x in rows) == [
        ("optimizer=adamw", "2"),
        ("optimizer=sgd", "2"),
    ]
    for x in rows:  # the summary figures of the runs, averaged
        accs = [
            json.loads((sweep / str(i) / "summary.json").read_text())["test/acc"] for i in range(4)
        ]
        vals = accs[:2] if x["group"] == "optimizer=adamw" else accs[2:]
        assert float(x["mean"]) == pytest.approx(sum(vals) / 2)
    assert (out / "report.html").read_text().count('<svg class="plot"') == 3
    # --baseline, and the default output dir inside the sweep
    r = cli(
        ["compare", str(sweep), "--baseline", "optimizer=sgd", "--metric", "best/val/acc"],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "baseline: optimizer=sgd (--baseline optimizer=sgd)" in r.stdout
    assert (sweep / "compare" / "report.md").is_file()
    # bad input: one line
    r = cli(["compare", str(sweep), "--metric", "nope"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: --metric: no run")
    r = cli(["compare", str(tmp_path / "missing")], cwd=tmp_path)
    assert r.returncode == 2 and "no such file or directory" in r.stderr
    # the sweep passed twice, and with a copy of it: each seed counted once, the copies named
    shutil.copytree(sweep, tmp_path / "copy", ignore=shutil.ignore_patterns("compare"))
    for paths in ([sweep, sweep], [sweep, tmp_path / "copy"]):
        out2 = tmp_path / f"rep{len(list(tmp_path.iterdir()))}"
        r = cli(["compare", *map(str, paths), "--out", str(out2)], cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        again = list(csv.DictReader((out2 / "summary.csv").open()))
        assert [(x["group"], x["n"], x["mean"]) for x in again] == [
            (x["group"], x["n"], x["mean"]) for x in rows
        ]
        copies = 4 if paths[1] != sweep else 0  # the same dir twice is read once
        md = (out2 / "report.md").read_text()
        assert md.count("duplicate: same config and seed as") == copies, md
        assert ("Given more than once, read once" in md) == (copies == 0), md


def test_holm_adjusted_p_decides_the_verdict_and_failed_k_of_n(tmp_path):
    """Three groups against one baseline: p_holm is Holm over their p's (by hand), the verdict is
    read on it (a raw p < 0.05 that does not survive gives no verdict), failed runs count in k/n."""
    root = tmp_path / "s"
    base = [0.80, 0.82, 0.81, 0.79, 0.83]
    near = [0.81, 0.82, 0.83, 0.80, 0.84]  # paired: +0.01 +0 +0.02 +0.01 +0.01, raw p 0.034
    near2 = [0.812, 0.82, 0.83, 0.80, 0.838]  # raw p 0.036
    far = [0.70, 0.72, 0.71, 0.69, 0.74]  # about -0.1 on every seed
    for s in range(5):
        make_run(root, f"a{s}", base[s], seed=s)
        make_run(root, f"b{s}", near[s], seed=s, optimizer={**SGD, "lr": 0.1})
        make_run(root, f"c{s}", far[s], seed=s, optimizer={**SGD, "lr": 0.5})
        make_run(root, f"d{s}", near2[s], seed=s, optimizer={**SGD, "lr": 0.2})
    make_run(root, "c5", None, seed=5, optimizer={**SGD, "lr": 0.5}, status="failed")
    res = compare.analyse(compare.load_runs([str(root)]), baseline="optimizer=adamw")
    by = {g.label: g.stats for g in res.groups}
    b, c, d = (by[f"optimizer=sgd optimizer.lr={lr}"] for lr in ("0.1", "0.5", "0.2"))
    pb, pc, pd = (stats.ttest_rel(x, base).pvalue for x in (near, far, near2))
    assert pc < pb < pd < 0.05
    # Holm by hand: 3 pc, then max(3 pc, 2 pb), then max(that, pd)
    assert c["p_holm"] == pytest.approx(3 * pc)
    assert b["p_holm"] == pytest.approx(2 * pb)
    assert d["p_holm"] == pytest.approx(max(2 * pb, pd))
    assert b["verdict"] == d["verdict"] == "no significant difference"
    assert c["verdict"] == "worse"
    assert c["failed"] == 1 and b["failed"] == 0
    md = compare.markdown(res)
    head = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert "| p | p_holm | verdict |" in head and "| MDE | failed k/n |" in head
    row = next(line for line in md.splitlines() if "optimizer.lr=0.1 |" in line)
    assert f"| {2 * pb:.3f} | no significant difference |" in row and "| 0/5 |" in row
    row = next(line for line in md.splitlines() if "optimizer.lr=0.5 |" in line)
    assert "| <0.001 | worse |" in row and "| 1/6 |" in row


def test_a_seed_run_twice_counts_once(tmp_path):
    """Two runs of one config on one seed (a copied run dir, a re-run) are one observation: kept
    once (the first in path order), the other listed with the dir it duplicates."""
    root = tmp_path / "s"
    for i, (seed, v) in enumerate([(0, 0.80), (1, 0.82), (1, 0.82), (2, 0.81)]):
        make_run(root, f"a{i}", v, seed=seed)
    for i, (seed, v) in enumerate([(0, 0.70), (1, 0.75), (2, 0.72)]):
        make_run(root, f"b{i}", v, seed=seed, optimizer=SGD)
    res = compare.analyse(compare.load_runs([str(root)]))
    a = next(g for g in res.groups if g.label == "optimizer=adamw")
    assert a.stats["n"] == 3 and a.stats["seeds"] == [0, 1, 2]
    assert a.stats["mean"] == pytest.approx((0.80 + 0.82 + 0.81) / 3, abs=1e-12)
    assert [(Path(r.path).name, why) for r, why in res.excluded] == [
        ("a2", f"duplicate: same config and seed as {root / 'a1'}; counted once")
    ]
    assert a.stats["failed"] == 0  # a copy is not a failure
    sgd = next(g for g in res.groups if g.label == "optimizer=sgd").stats
    assert sgd["test"] == "paired t"  # seeds 0 1 2 on both sides, as without the copy


def test_identical_runs_have_no_spread_not_a_ci(tmp_path):
    root = tmp_path / "s"
    for seed in range(3):
        make_run(root, f"a{seed}", 0.659, seed=seed)
    res = compare.analyse(compare.load_runs([str(root)]))
    row = compare.table_rows(res)[0]
    assert row[3] == "0.6590 (no spread)" and "±" not in row[3]


def test_runs_on_different_data_are_never_compared(tmp_path):
    """Groups whose data differ (here dataset.num_samples, a data key) would compare datasets,
    not tricks: one error line naming the key, the runs on each, and how to compare apart."""
    root = tmp_path / "s"
    for seed in range(2):
        make_run(root, f"a{seed}", 0.8, seed=seed)
        make_run(root, f"b{seed}", 0.6, seed=seed, config_extra={"dataset.num_samples": 900})
    with pytest.raises(ConfigError) as e:
        compare.analyse(compare.load_runs([str(root)]))
    msg = str(e.value)
    assert "\n" not in msg
    assert "different data (dataset.num_samples differ" in msg
    assert "dataset.num_samples=5000 (2 run(s))" in msg and "dataset.num_samples=900" in msg
    assert "compare each dataset's runs apart" in msg
    r = cli(["compare", str(root), "--out", str(tmp_path / "rep")], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: PATH: these runs are on different data")
    assert not (tmp_path / "rep").exists()


def test_a_small_val_split_is_said(tmp_path):
    """val/acc in steps of 1/18 (an 18-row val split): the report says one row = 5.6 points;
    a 1000-row split's figures (k/1000) say nothing."""
    from runner.runs import val_rows

    assert val_rows([k / 18 for k in (3, 7, 11, 12, 15, 17)]) == 18
    assert val_rows([k / 1000 for k in (503, 611, 707, 812, 919)]) is None
    assert val_rows([0.5, 1.0, 0.5]) is None  # too few distinct values to tell
    root = tmp_path / "s"
    for seed in range(3):
        curve = [k / 18 for k in (5 + seed, 9 + seed, 12 + seed)]
        make_run(root, f"a{seed}", curve[-1], seed=seed, curve=curve)
    res = compare.analyse(compare.load_runs([str(root)]))
    assert (
        len(res.notes) == 1
        and "steps of 1/18 (about 18 rows; one row = 5.6 points)" in (res.notes[0])
    )
    assert res.notes[0] in compare.markdown(res)
