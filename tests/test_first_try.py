"""Right on the first try (issue 36): a run length that fits the model, a first line that says the
plan and where its numbers came from, an ETA and a warning for a long CPU run, the command that
resumes an interrupted run, wall time across resumes, the result line on stdout, no empty
main.log, `tricks list` one line per option at 80 columns. As a user runs them, in a
subprocess, where the issue asks."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from runner.config import compose, options

from conftest import ROOT, cli

TINY_TEXT = [
    "model=transformer",
    "model.width=16",
    "model.depth=1",
    "model.heads=2",
    "model.tokenizer=bytes",
    "dataset=tweets",
    "dataset.train_size=16",
    "dataset.val_size=8",
    "dataset.test_size=8",
    "dataset.max_len=16",
    "trainer.batch_size=8",
    "trainer.progress=false",
]


def _cfg_job(args: list[str], cwd) -> dict:
    r = cli(["train", *args, "--cfg", "job"], cwd)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def test_minilm_composes_three_epochs_and_the_users_epochs_win(tmp_path):
    cfg = _cfg_job(["dataset=tweets", "model=minilm"], tmp_path)
    assert cfg["trainer"]["epochs"] == 3
    assert (
        _cfg_job(["dataset=tweets", "model=minilm", "trainer.epochs=7"], tmp_path)["trainer"][
            "epochs"
        ]
        == 7
    )
    # every entry point agrees (composition applies it); the other models
    assert compose(["model=hf", "dataset=tweets"]).trainer.epochs == 3
    assert compose(["model=transformer", "dataset=tweets"]).trainer.epochs == 10
    for m in ("mlp", "cnn1d"):  # mnist1d's models: the default run is unchanged
        assert compose([f"model={m}"]).trainer.epochs == 150


def test_mnist1d_default_run_trains_every_row():
    """The default run's batches cover the train split exactly (3500 / 100): no partial batch,
    so keeping constant batches changes none of its numbers."""
    from runner import build

    cfg = compose([])
    n = len(build.data(cfg).train["y"])
    assert n % cfg.trainer.batch_size == 0, n


def test_first_line_states_the_plan_and_its_source(tmp_path):
    r = cli(["train", *TINY_TEXT, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert r.returncode == 0, r.stderr
    first = next(line for line in r.stderr.splitlines() if not line.startswith("note:"))
    assert first.startswith("train 20 steps (10 epochs of 2), batch 8, on cpu · defaults: ")
    assert "trainer.epochs=10 from model=transformer's defaults" in first
    assert "sit out" not in first  # 16 rows in batches of 8: none left out
    assert "eta " in r.stderr  # after the first evaluation
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["steps"] == s["planned_steps"] == 20 and s["stopped_early"] is False


def test_interrupted_run_prints_the_command_that_resumes_it(tmp_path):
    """SIGTERM mid-run: the line names the exact command; running it (as printed, through a
    shell, with stdout sent to a file) resumes the run to the end; the result line is in the
    file; wall_seconds adds the first process's time."""
    d = tmp_path / "my run"  # a space: the command must quote it
    args = [
        "reg=[flooding]",
        "reg.flooding.b=0.01",
        "trainer.max_steps=12",
        "trainer.eval_every=4",
        "trainer.batch_size=32",
        "trainer.progress=false",
    ]
    r = cli(
        ["train", *args, f"hydra.run.dir={d}"],
        tmp_path,
        env={"TRICKS_TEST_KILL_AT_STEP": "6:TERM"},
    )
    assert r.returncode not in (0, -signal.SIGTERM), r.stderr
    # the first line says the partial batch once: 3500 rows in batches of 32 leave 12 out
    assert "12 of 3,500 train rows sit out each epoch" in r.stderr.splitlines()[0]
    line = next(x for x in r.stderr.splitlines() if x.startswith("interrupted"))
    cmd = line.split(" · resume: ", 1)[1]
    parts = shlex.split(cmd)
    assert parts[:2] == ["tricks", "train"] and "resume=true" in parts
    assert f"hydra.run.dir={d}" in parts and "reg=[flooding]" in parts
    first = json.loads((d / "summary.json").read_text())
    assert first["status"] == "interrupted" and first["steps"] == 6
    before = torch.load(d / "checkpoints" / "last.pt", weights_only=True)["wall_seconds"]
    assert before > 0

    # the printed command, `tricks` being this checkout's CLI
    shell = f"{shlex.quote(sys.executable)} -m runner.cli {shlex.join(parts[1:])} > log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(shell, shell=True, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    s = json.loads((d / "summary.json").read_text())
    assert (s["status"], s["steps"], s["resumed"]) == ("completed", 12, True)
    log = (tmp_path / "log").read_text().strip().splitlines()
    assert log and log[-1].startswith("done test/acc") and str(d) in log[-1]  # `> log` kept it
    assert s["wall_seconds"] == pytest.approx(before + s["process_wall_seconds"])
    assert s["wall_seconds"] >= s["train_seconds"]
    assert not (d / "main.log").exists()  # Hydra's job log: only when something is logged


def test_long_cpu_run_says_so_with_the_override_that_shortens_it(monkeypatch, capsys):
    from types import SimpleNamespace

    from runner.log import progress
    from runner.main import shorten_hint

    class State:
        total_steps = 10_000

    cfg = compose([])  # 150 epochs
    hint = lambda f: shorten_hint(cfg, State, f)  # noqa: E731
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])

    def step(view, k, seconds):
        now[0] += seconds
        view.on_step_end(SimpleNamespace(step=k))

    view = progress.ProgressView(10_000, enabled=False, plan="train 10,000 steps", shorten=hint)
    step(view, 1, 5.0)  # the first step's warm-up is not timed
    for k in (2, 3, 4):
        step(view, k, 1.0)  # 1 s a step: 8 s spent + 9,996 s left = 2:46:44
    now[0] += 31.0
    view.update(35, {"val/acc": 0.5})  # the first evaluation: the ETA, the warning not again
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "train 10,000 steps"
    assert err[1].startswith("this CPU run is predicted to take 2:46:44 (over 30 min)")
    # 150 epochs cut to 30 min with a 10% margin: 150 * 1800 / 10004 * 0.9 = 24.3
    assert "trainer.epochs=24 brings it under" in err[1]
    assert err[2] == "eta 3:05:03 for the 9,965 steps left"  # 39 s / 35 steps * 9,965
    assert len(err) == 3

    # fast first steps, slow evaluations: the warning comes with the ETA
    view = progress.ProgressView(10_000, enabled=False, shorten=hint)
    for k in (1, 2, 3, 4):
        step(view, k, 0.01)
    now[0] += 60.0
    view.update(35, {"val/acc": 0.5})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("eta 4:44:54 for the 9,965 steps left · this CPU run is predicted")
    # not a CPU run (no `shorten`): the ETA alone
    view = progress.ProgressView(10_000, enabled=False)
    now[0] += 60.0
    view.update(35, {"val/acc": 0.5})
    last = capsys.readouterr().err.strip()
    assert last.startswith("eta ") and "CPU" not in last
    steps = compose(["trainer.max_steps=5000"])
    assert shorten_hint(steps, State, 0.1) == "trainer.max_steps=1000"


def test_list_is_one_line_per_option_at_80_columns(tmp_path):
    r = cli(["list"], tmp_path, env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").splitlines()
    groups = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra")
    names = [o for g in groups for o in options(g)]
    assert len(lines) == 1 + len(names)  # a header, then one line each
    for line, name in zip(lines[1:], names):
        assert len(line) <= 80, line
        assert f" {name} " in f" {line} ", (name, line)  # the name whole
    assert any(line.rstrip().endswith("…") for line in lines)  # long help is cut, not wrapped
