"""experiments/: every study file parses, and each arm of each study composes, validates and
trains a few steps at the centre of its search space (first workload), every further workload
trains with the baseline arm; flooding's analysis runs on a synthetic study; run inputs decide
whether a commit is dirty.

Parametrized over experiments/*/study.yaml, so a new study or arm is tested by adding it."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, train_run

EXP = ROOT / "experiments"
TINY = [
    "trainer.max_steps=3",
    "trainer.eval_every=3",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.epochs=1",
]
# 128 train rows: a text study at batch 100 (derived_text) fits one batch
TINY_TEXT = ["dataset.train_size=128", "dataset.val_size=32", "dataset.test_size=32"]
# pretrained encoders (MiniLM, 22M params): tiny batches of short texts keep each arm ~5 s
TINY_PRETRAINED = [
    "dataset.train_size=16",
    "dataset.val_size=8",
    "dataset.test_size=8",
    "dataset.max_len=16",
    "trainer.batch_size=4",
    "trainer.eval_batch_size=8",
]


def study_files() -> list[Path]:
    return sorted(EXP.glob("*/study.yaml"))


@functools.cache  # collection parametrizes over arms and over workloads: parse each file once
def load(path: Path):
    from runner.study.spec import parse_text

    return parse_text(path, path.read_text())


def arms():
    out = []
    for p in study_files():
        for arm in load(p).arms:
            out.append(pytest.param(p, arm, id=f"{p.parent.name}/{arm}"))
    return out


def workloads():
    """(study, workload) for every workload after the first: its baseline arm trains there."""
    out = []
    for p in study_files():
        for w in list(load(p).workloads)[1:]:
            out.append(pytest.param(p, w, id=f"{p.parent.name}/{w}"))
    return out


def test_every_study_is_complete():
    names = {p.parent.name for p in study_files()}
    assert {
        "flooding",
        "derived",
        "clipping",
        "lion_vs_adamw",
        "rdrop_vs_adversarial",
        "childtuning",
    } <= names
    for p in study_files():
        s = load(p)
        assert s.description, f"{p}: needs a first-line # description"
        assert len(s.seeds) >= 5, f"{p}: at least 5 confirmation seeds"
        assert s.budget >= 1 and s.select.startswith("val/")
        assert (p.parent / "README.md").is_file(), f"{p}: README.md"


def test_flooding_study_validates_whole():
    """The converted example: every arm x workload composes and validates (runner.study.load)."""
    from runner.study import load as full_load

    s = full_load(EXP / "flooding" / "study.yaml")
    assert set(s.workloads) == {"clean", "noisy"}
    assert set(s.arms) == {"none", "flood", "b0.05", "b0.1", "b0.2", "b0.4"}  # tuned b and a grid
    assert s.analysis == EXP / "flooding" / "analysis.py"


def _tiny(ovr: list[str]) -> list[str]:
    from runner.study.spec import merge

    if any(o.startswith("dataset=tweets") for o in ovr):
        ovr = merge(ovr, TINY_TEXT)
    if any(o.startswith("model=") and o.split("=", 1)[1] in ("minilm", "hf") for o in ovr):
        ovr = merge(ovr, TINY_PRETRAINED)
    return merge(ovr, TINY)


def _train_tiny(s, w: str, arm: str, tmp_path: Path) -> None:
    from runner.overrides import precheck
    from runner.study.spec import run_overrides

    centre = {d.key: d.value(0.5) for d in s.space(arm)}
    ovr = _tiny(run_overrides(s, w, s.arms[arm], centre, s.tune_seeds[0]))
    precheck(ovr)
    summary = train_run(ovr, tmp_path / "run")
    assert summary["status"] == "completed", summary.get("error")
    assert summary["steps"] == 3


@pytest.mark.parametrize("path,arm", arms())
def test_study_arm_trains(path, arm, tmp_path):
    s = load(path)
    _train_tiny(s, next(iter(s.workloads)), arm, tmp_path)


@pytest.mark.parametrize("path,workload", workloads())
def test_study_workload_trains(path, workload, tmp_path):
    """Each further workload composes and trains with the baseline arm (a workload's own
    overrides can break a run that the first workload's arms do not show)."""
    s = load(path)
    _train_tiny(s, workload, s.baseline, tmp_path)


def _fake_run(d: Path, b, train_loss: float, test_loss: float, status="completed"):
    d.mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps({"status": status, "test/acc": 0.6, "final/test/loss": test_loss})
    )
    (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "train/loss": train_loss}) + "\n")


def test_flooding_analysis_reads_trials_and_confirmation_runs(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("flood_an", EXP / "flooding" / "analysis.py")
    an = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(an)
    arms = {}
    for arm, bs in (("none", [None, None]), ("flood", [0.05, 0.4])):
        trials = []
        for i, b in enumerate(bs):
            rd = f"runs/clean/{arm}/trial-{i:02d}-seed-100"
            _fake_run(tmp_path / rd, b, train_loss=b or 0.02, test_loss=1.4 - (b or 0))
            trials.append(
                {
                    "index": i,
                    "params": {"optimizer.lr": 0.01, **({"reg.flooding.b": b} if b else {})},
                    "select_value": 0.6,
                    "status": "completed",
                    "run_dir": rd,
                }
            )
        conf = [f"runs/clean/{arm}/confirm-trial-01-seed-{s}" for s in (0, 1)]
        for s, rd in enumerate(conf):
            _fake_run(tmp_path / rd, None, 0.4 if arm == "flood" else 0.02, 1.0 + s * 0.1)
        arms[arm] = {"trials": trials, "final": {"run_dirs": conf}}
    md = an.analyse({"by_workload": {"clean": {"arms": arms}}}, tmp_path)
    assert "### clean" in md and "| 0.05 | 0.01 | 0.6 | 0.05 | 1.35 | completed |" in md
    assert "| flood | 2/2 |" in md and "| none | 2/2 |" in md
    assert "1.0500 ± 0.6353" in md  # final/test/loss 1.0, 1.1: mean ± t(0.975, 1) * 0.0707
    assert (tmp_path / "flooding_b_clean.png").is_file()


def test_a_commit_is_dirty_only_for_uncommitted_run_inputs(tmp_path):
    """Docs and the results a study writes leave the commit clean; code, configs, study files
    and analyses do not."""
    from runner.gitinfo import commit_info

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    files = [
        "README.md",
        "experiments/README.md",
        "experiments/a/README.md",
        "experiments/a/study/report.md",
        "runner/engine.py",
        "experiments/a/study.yaml",
        "experiments/a/analysis.py",
        "conf/config.yaml",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x\n")
    subprocess.run(git[:-2] + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    sha, dirty = commit_info(tmp_path)
    assert len(sha) >= 7 and not dirty
    for f in files[:4]:  # docs and results
        (tmp_path / f).write_text("y\n")
    assert commit_info(tmp_path) == (sha, False)
    for f in files[4:]:  # code, a study file, an analysis, a config
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-qm", "next"], check=True)
        sha = commit_info(tmp_path)[0]
        (tmp_path / f).write_text("y\n")
        assert commit_info(tmp_path) == (sha, True), f
    (tmp_path.parent / "nogit").mkdir(exist_ok=True)
    assert commit_info(tmp_path.parent / "nogit") == ("unknown", False)


def test_a_runs_commit_is_its_own_checkouts_only(tmp_path):
    """summary.json's commit is the tricks checkout's: a package dir that is not the top of its
    own repository (a site-packages inside a user's project repo) records "unknown", not the
    project's commit."""
    from runner.gitinfo import checkout_commit

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    inner = tmp_path / ".venv" / "lib" / "site-packages"
    inner.mkdir(parents=True)
    (tmp_path / "x.py").write_text("x\n")
    subprocess.run(git[:-2] + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(git + ["add", "x.py"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    sha = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert checkout_commit(tmp_path) == (sha.stdout.strip(), False)
    assert checkout_commit(inner) == ("unknown", False)
