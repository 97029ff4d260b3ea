"""experiments/: every recipe's every arm composes and trains a few steps; the driver builds the
commands a user would type, and turns sweeps into reports.

Parametrized over experiments/*/recipe.yaml, so a new recipe or arm is tested by adding it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, train_run

spec = importlib.util.spec_from_file_location("experiments_driver", ROOT / "scripts" / "experiments.py")
X = importlib.util.module_from_spec(spec)
spec.loader.exec_module(X)

TINY = ["trainer.max_steps=3", "trainer.eval_every=3", "trainer.log_every=1",
        "trainer.progress=false", "seed=0"]
TINY_TEXT = ["dataset.train_size=64", "dataset.val_size=32", "dataset.test_size=32"]
# pretrained encoders (MiniLM, 22M params): tiny batches of short texts keep each arm ~5 s
TINY_PRETRAINED = ["dataset.train_size=16", "dataset.val_size=8", "dataset.test_size=8",
                   "dataset.max_len=16", "trainer.batch_size=4", "trainer.eval_batch_size=8"]


def _pretrained(ovr) -> bool:
    return any(o.startswith("model=") and o.split("=", 1)[1] in ("minilm", "hf") for o in ovr)


def arms():
    out = []
    for name in X.recipes():
        r = X.load(name)
        for arm in r["arms"]:
            out.append(pytest.param(name, arm, id=f"{name}/{arm}"))
    return out


def test_every_recipe_is_complete():
    names = X.recipes()
    assert {"flooding", "derived", "clipping", "lion_vs_adamw", "rdrop_vs_adversarial",
            "childtuning"} <= set(names)
    for name in names:
        r = X.load(name)
        assert r["description"], f"{name}/recipe.yaml needs a first-line # description"
        assert len(r["seeds"]) >= 5, f"{name}: at least 5 seeds per arm"
        assert (ROOT / "experiments" / name / "README.md").is_file(), f"{name}: README.md"
        for cname, spec in r["compare"].items():
            assert set(spec["arms"]) <= set(r["arms"]), f"{name}/{cname}: unknown arm"
        if r.get("analysis"):
            assert r["analysis"] in X.ANALYSES


@pytest.mark.parametrize("name,arm", arms())
def test_recipe_arm_trains(name, arm, tmp_path):
    r = X.load(name)
    ovr = X.first_combo(X.arm_overrides(r, arm))
    if any(o.startswith("dataset=tweets") for o in ovr):
        ovr = X.merge(ovr, TINY_TEXT)
    if _pretrained(ovr):
        ovr = X.merge(ovr, TINY_PRETRAINED)
    summary = train_run(X.merge(ovr, TINY), tmp_path / "run")
    assert summary["status"] == "completed", summary.get("error")
    assert summary["steps"] == 3
    cfg = (tmp_path / "run" / "config.yaml").read_text()
    assert f"arm: {arm}" in cfg  # the tag `tricks compare --baseline arm=...` relies on


def test_merge_replaces_same_key_and_keeps_order():
    assert X.merge(["a=1", "b=2"], ["+c=3"], ["a=9"]) == ["b=2", "+c=3", "a=9"]
    assert X.first_combo(["x=1,2,3", "reg=[rdrop,fgm]", "y=4"]) == ["x=1", "reg=[rdrop,fgm]", "y=4"]


def test_dry_run_prints_the_commands_with_user_overrides(capsys):
    assert X.main(["run", "flooding", "--dry-run", "trainer.epochs=3", "trainer.device=cuda"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("$ tricks train -m")]
    r = X.load("flooding")
    assert len(lines) == len(r["arms"])
    for line, arm in zip(lines, r["arms"]):
        assert " trainer.epochs=3 " in line and "trainer.epochs=40" not in line
        assert "trainer.device=cuda" in line
        assert f"+arm={arm}" in line and "seed=0,1,2,3,4" in line
        assert f"hydra.sweep.dir=experiments/flooding/runs/{arm}" in line


def test_steps_to_target():
    rows = [{"step": s, "train/loss": v} for s, v in
            [(5, 2.0), (10, 1.2), (15, 0.9), (20, 0.8), (25, 1.5), (30, 0.5)]]
    assert X.steps_to(rows, "train/loss", 1.0, smooth=1) == 15
    assert X.steps_to(rows, "train/loss", 1.0, smooth=2) == 20  # (0.9 + 0.8) / 2
    assert X.steps_to(rows, "train/loss", 0.1, smooth=1) is None


def test_optimizer_state_memory_lion_half_of_adamw():
    _, adamw = X.optimizer_state_bytes(["optimizer=adamw", "model=mlp"])
    pb, lion = X.optimizer_state_bytes(["optimizer=lion", "model=mlp"])
    assert lion == pb  # one momentum buffer
    assert adamw == 2 * pb  # exp_avg and exp_avg_sq (the scalar step is not counted)


@pytest.mark.slow
def test_driver_end_to_end(tmp_path, monkeypatch):
    """A two-arm recipe through the real CLI: sweeps, run_info.json, and the compare report."""
    exp = tmp_path / "experiments" / "tiny"
    exp.mkdir(parents=True)
    (exp / "recipe.yaml").write_text(
        "# tiny\nseeds: [0, 1]\ncommon: [trainer.max_steps=4, trainer.eval_every=2, "
        "trainer.batch_size=50]\narms:\n  baseline: []\n  flood: ['reg=[flooding]', "
        "reg.flooding.b=0.5]\ncompare:\n  main: {arms: [baseline, flood], baseline: arm=baseline}\n")
    monkeypatch.setattr(X, "EXPERIMENTS", tmp_path / "experiments")
    assert X.main(["run", "tiny"]) == 0
    runs = sorted((exp / "runs").glob("*/*/summary.json"))
    assert len(runs) == 4
    assert all(json.loads(p.read_text())["status"] == "completed" for p in runs)
    info = json.loads((exp / "results" / "run_info.json").read_text())
    assert set(info["arms"]) == {"baseline", "flood"}
    report = (exp / "results" / "main" / "report.md").read_text()
    assert "arm=flood" in report and "baseline" in report


def test_cost_times_every_arm_in_one_process(tmp_path):
    recipe = {"name": "tiny", "seeds": [0], "common": ["trainer.batch_size=50"],
              "arms": {"baseline": [], "rdrop": ["reg=[rdrop]"]}, "compare": {}}
    X.measure_cost(recipe, [], tmp_path, steps=4, reps=1)
    rows = [l for l in (tmp_path / "cost.md").read_text().splitlines() if l.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["baseline", "rdrop"]
    assert rows[1].rstrip().endswith("1.00× |")


def test_render_uses_only_run_files(tmp_path):
    recipe = X.load("flooding")
    assert "Not run yet" in X.render(recipe, tmp_path / "nothing")
    (tmp_path / "run_info.json").write_text(json.dumps({"arms": {"clean": {
        "command": "tricks train -m x=1", "commit": "abc1234", "wall_seconds": 12.0,
        "finished": "2026-01-01 00:00 UTC"}}}))
    text = X.render(recipe, tmp_path)
    assert "abc1234" in text and "`tricks train -m x=1`" in text
    assert "Arms not run yet: noisy" in text


def test_lock_refuses_a_second_driver_on_the_same_arm(tmp_path):
    arm = tmp_path / "runs" / "baseline"
    assert X.lock(arm)  # first claim
    assert X.lock(arm)  # the same process may claim again
    (arm / ".driver.lock").write_text(str(os.getppid()))  # a live process (our parent) holds it
    assert not X.lock(arm)
    (arm / ".driver.lock").write_text("999999999")  # a dead one: taken over
    assert X.lock(arm)


def test_lion_analysis_groups_a_grid_spread_over_arms_by_optimizer(tmp_path):
    """An extension arm (adamw_hi) joins its optimizer's grid: one table, one best cell and one
    memory row per optimizer, the best cell chosen over both arms."""
    tiny = ["model=mlp", "model.hidden=16", "trainer.max_steps=2", "trainer.eval_every=2",
            "trainer.progress=false", "trainer.batch_size=50", "dataset.num_samples=600",
            "dataset.val_size=50"]
    cells = {"adamw": ["optimizer=adamw", "optimizer.lr=1e-3", "optimizer.weight_decay=0.01"],
             "adamw_hi": ["optimizer=adamw", "optimizer.lr=3e-3", "optimizer.weight_decay=0.01"],
             "lion": ["optimizer=lion", "optimizer.lr=1e-4", "optimizer.weight_decay=0.1"]}
    runs = tmp_path / "runs"
    for arm, ovr in cells.items():
        for seed in (0, 1):
            s = train_run(tiny + ovr + [f"+arm={arm}", f"seed={seed}"], runs / arm / str(seed))
            assert s["status"] == "completed"
    recipe = {"name": "tiny", "common": tiny, "arms": cells, "select": "best/val/acc",
              "best_baseline": "optimizer=adamw"}
    X.analysis_lion(recipe, runs, tmp_path / "out")
    text = (tmp_path / "out" / "analysis.md").read_text()
    assert text.count("\n## adamw") == 1 and text.count("\n## lion") == 1
    adamw = text.split("\n## adamw")[1].split("\n## ")[0]
    assert "| 0.001 | 0.01 | 2 |" in adamw and "| 0.003 | 0.01 | 2 |" in adamw
    memory = text.split("Optimizer-state memory")[1]
    assert memory.count("| adamw |") == 1 and memory.count("| lion |") == 1
    assert "adamw_hi" not in memory


def test_a_runs_commit_is_dirty_only_for_uncommitted_run_inputs(tmp_path, monkeypatch):
    """Docs and the results the driver writes leave the commit clean; code and recipes do not."""
    import subprocess
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    files = ["README.md", "experiments/README.md", "experiments/a/README.md",
             "experiments/a/results/report.md", "runner/engine.py", "experiments/a/recipe.yaml",
             "conf/config.yaml"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x\n")
    subprocess.run(git[:-2] + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    monkeypatch.setattr(X, "ROOT", tmp_path)
    sha = X.git_commit()
    assert len(sha) >= 7 and "uncommitted" not in sha
    for f in files[:4]:  # docs and results
        (tmp_path / f).write_text("y\n")
    assert X.git_commit() == sha
    for f in files[4:]:  # code, a recipe, a config
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-qm", "docs"], check=True)
        sha = X.git_commit()
        (tmp_path / f).write_text("y\n")
        assert X.git_commit() == sha + " (+ uncommitted changes in the shared tree)"
