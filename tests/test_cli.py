"""The CLI end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT, cli, read_rows

SHORT = [
    "trainer.max_steps=8",
    "trainer.eval_every=4",
    "trainer.log_every=2",
    "trainer.batch_size=50",
]
CONTRACT_ROW_KEYS = {
    "step",
    "epoch",
    "train/loss",
    "train/acc",
    "lr",
    "grad_norm",
    "samples_per_sec",
}
EVAL_KEYS = {"val/loss", "val/acc", "test/loss", "test/acc"}
SUMMARY_KEYS = {
    "best/val/acc",
    "test/acc",
    "final/test/acc",
    "steps",
    "wall_seconds",
    "samples_per_sec",
    "peak_mem_bytes",
    "status",
}


def _run_dirs(root):
    return sorted(p.parent for p in root.rglob("summary.json"))


def test_train_writes_the_contract_files(tmp_path):
    r = cli(["train", *SHORT, "hydra.run.dir=out"], tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "out"
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run / f).is_file(), f
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["trainer"]["max_steps"] == 8 and cfg["seed"] == 0
    rows = read_rows(run)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4, 6, 8]
    assert set(train_rows[0]) >= CONTRACT_ROW_KEYS
    eval_rows = [r for r in rows if "val/acc" in r]
    assert [r["step"] for r in eval_rows] == [4, 8] and set(eval_rows[0]) >= EVAL_KEYS
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert summary["final/test/acc"] == eval_rows[-1]["test/acc"]
    best = max(eval_rows, key=lambda r: r["val/acc"])
    assert summary["best/val/acc"] == best["val/acc"]
    # provenance: the commit of the tricks checkout that ran it (read with git here, apart
    # from the code under test); "unknown" where the source is not a git checkout's top
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True)
    if top.returncode == 0 and Path(top.stdout.decode().strip()).resolve() == ROOT.resolve():
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True
        )
        assert summary["commit"] == head.stdout.decode().strip()
        assert isinstance(summary["dirty"], bool)
    else:
        assert (summary["commit"], summary["dirty"]) == ("unknown", False)
    last = r.stdout.strip().splitlines()[-1]  # the final line: on stdout, `> log` keeps it
    assert last.startswith("done test/acc") and "out" in last, r.stdout


def test_overrides_and_multirun(tmp_path):
    r = cli(
        [
            "train",
            "-m",
            "optimizer=adamw,sgd",
            "seed=0,1",
            "trainer.max_steps=4",
            "trainer.eval_every=4",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    runs = _run_dirs(tmp_path / "sweep")
    assert len(runs) == 4
    seen = set()
    for run in runs:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        seen.add((cfg["optimizer"]["_target_"].rsplit(".", 1)[-1], cfg["seed"]))
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert seen == {("AdamW", 0), ("AdamW", 1), ("SGDW", 0), ("SGDW", 1)}


def test_model_optimizer_override(tmp_path):
    r = cli(
        [
            "train",
            "model=cnn1d",
            "optimizer=sgd",
            "trainer.epochs=1",
            "seed=3",
            "hydra.run.dir=out",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert cfg["model"]["_target_"].endswith("CNN1d") and cfg["seed"] == 3
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 35


def test_list(tmp_path):
    r = cli(["list"], tmp_path)
    assert r.returncode == 0
    for g in ("model", "optimizer", "dataset", "clip", "schedule", "logger"):
        assert g in r.stdout
    assert "Residual MLP" in r.stdout
    r = cli(["list", "optimizer"], tmp_path)
    assert "adamw" in r.stdout and "mlp" not in r.stdout
    r = cli(["list", "nope"], tmp_path)
    assert r.returncode != 0 and "nope" in r.stderr


def test_help(tmp_path):
    r = cli(["--help"], tmp_path)
    assert r.returncode == 0 and "train" in r.stdout and "compare" in r.stdout
    assert "'reg=[rdrop]'" in r.stdout  # list syntax survives rich markup
    r = cli(["train", "--help"], tmp_path)
    assert r.returncode == 0 and "override" in r.stdout.lower()
    assert "'reg=[rdrop,flooding]'" in r.stdout
    # every command's help renders (a bracket in a help text is rich markup: compare's
    # "project[/group]" closed a tag never opened and crashed `tricks compare --help`)
    for cmd in ("compare", "list", "study"):
        r = cli([cmd, "--help"], tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (cmd, r.stderr[-300:])
    r = cli(["compare", "--help"], tmp_path, env={"COLUMNS": "200"})
    assert "wandb:entity/project[/group]" in r.stdout


def _one_line_error(r, *needles):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_config_one_line_no_run_dir(tmp_path):
    _one_line_error(cli(["train", "optimizer=nope"], tmp_path), "optimizer", "adamw", "sgd")
    _one_line_error(cli(["train", "trainer.batch_size=-3"], tmp_path), "trainer.batch_size")
    _one_line_error(cli(["train", "optimizer.lr=-0.1"], tmp_path), "optimizer.lr")
    _one_line_error(cli(["train", "trainer.precision=fp8"], tmp_path), "trainer.precision", "bf16")
    _one_line_error(cli(["train", "trainer.nope=1"], tmp_path), "trainer.nope")
    _one_line_error(cli(["train", "-m", "optimizer=adamw,nope"], tmp_path), "nope")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "multirun").exists()


def test_the_mission_command_with_a_bare_trick_name(tmp_path):
    """`tricks train optimizer=lion reg=rdrop`: a bare name selects one trick, as reg=[rdrop]."""
    r = cli(
        [
            "train",
            "optimizer=lion",
            "reg=rdrop",
            "trainer.max_steps=4",
            "trainer.eval_every=4",
            "trainer.log_every=2",
            "hydra.run.dir=out",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert list(cfg["reg"]) == ["rdrop"] and cfg["optimizer"]["_target_"].endswith("Lion")
    assert any("train/rdrop_kl" in row for row in read_rows(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "completed"


def test_a_misspelt_key_names_the_closest_one_in_a_study_too(tmp_path):
    """`reg.rdrop.alpah` in an arm's own search space: the study says which arm and search, and
    the same fix as `tricks train` (rdrop's keys, alpha the closest), not "select rdrop"; a
    misspelt study key and arm name get their closest match. One line, exit 2, nothing written."""
    study = {
        "common": ["trainer.max_steps=4"],
        "baseline": "base",
        "arms": {"base": [], "rdrop": ["reg=[rdrop]"]},
        "arm_search": {"rdrop": {"reg.rdrop.alpah": "uniform(0.1, 1.0)"}},
        "budget": 1,
        "tune_seeds": [100],
        "seeds": [0, 1],
        "select": "val/acc",
        "metric": "test/acc",
    }
    cases = [
        (study, "arm_search.rdrop: arms.rdrop: reg.rdrop.alpah: unknown key; did you mean alpha?"),
        ({**study, "arm_search": None, "budgt": 2}, "budgt: unknown study key; did you mean"),
        ({**study, "arm_search": None, "baseline": "bas"}, "did you mean base?"),
    ]
    for i, (s, expect) in enumerate(cases):
        f = tmp_path / f"s{i}.yaml"
        f.write_text(yaml.safe_dump({k: v for k, v in s.items() if v is not None}))
        r = cli(["study", f.name, "--out", "out"], tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
        assert expect in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()
