"""Exact resume: runs killed with a real SIGKILL (or stopped by SIGTERM) at chosen moments and
resumed with `tricks train ... resume=true hydra.run.dir=DIR` end with exactly the same
summary.json figures and metrics.jsonl rows as an uninterrupted run (timing fields aside).

The kills are real signals: TRICKS_TEST_KILL_AT_STEP=N makes the process SIGKILL itself right
after optimizer step N ("N:TERM" sends SIGTERM), TRICKS_TEST_KILL_IN_SAVE=N kills it halfway
through writing its N-th checkpoint file; one test kills from outside at an unplanned moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CONF, ROOT, TIMING_KEYS, cli, read_rows, strip_timing

# 3500 train samples / 256 = 13 steps per epoch: 30 steps cross two epoch boundaries; evaluation
# every epoch (steps 13, 26) and at the end; checkpoints every 4 steps, so most kills land between
# checkpoints and mid-epoch.
BASE = [
    "trainer.max_steps=30",
    "trainer.batch_size=256",
    "trainer.log_every=3",
    "trainer.checkpoint_every=4",
    "trainer.progress=false",
    "trainer.deterministic=true",
    "trainer.device=cpu",
    "model.dropout=0.1",
]


def _stateful() -> list[str]:
    """Tricks that carry state across steps (EMA, Lookahead, clip, R-Drop's dropout draws), with
    gradient accumulation: whichever of them exist."""
    o = ["trainer.accum_steps=2"]
    derived = [n for n in ("ema", "lookahead") if (CONF / "derived" / f"{n}.yaml").exists()]
    if derived:
        o.append(f"derived=[{','.join(derived)}]")
    if (CONF / "reg" / "rdrop.yaml").exists():
        o.append("reg=[rdrop]")
    if (CONF / "clip" / "norm.yaml").exists():
        o.append("clip=norm")
    return o


# One configuration for every kill test (each subprocess costs ~10 s of startup): the stateful
# tricks make it the strict case.
ARGS = BASE + _stateful()


def summary_figures(run_dir: Path) -> dict:
    s = json.loads((Path(run_dir) / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in TIMING_KEYS and k != "resumed"}


def train(args, run_dir, env=None, **kw):
    return cli(["train", *args, f"hydra.run.dir={run_dir}"], cwd=run_dir.parent, env=env, **kw)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The uninterrupted run, by the same CLI."""
    d = tmp_path_factory.mktemp("baseline") / "run"
    r = train(ARGS, d)
    assert r.returncode == 0, r.stderr
    return d


def assert_same_run(got: Path, want: Path):
    assert strip_timing(read_rows(got)) == strip_timing(read_rows(want))
    a, b = summary_figures(got), summary_figures(want)
    assert a == b
    assert a["status"] == "completed" and a["steps"] == 30
    assert json.loads((got / "summary.json").read_text())["resumed"] is True


def ckpt_step(run_dir: Path) -> int:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]


@pytest.mark.slow
def test_sigkill_chain_resumes_exactly(tmp_path, baseline):
    """Killed three times (mid-epoch between checkpoints, just past an epoch boundary, halfway
    through writing a checkpoint), resumed each time: the same rows and figures as no kill."""
    want = baseline
    d = tmp_path / "run"
    args = ARGS

    r = train(args, d, env={"TRICKS_TEST_KILL_AT_STEP": "6"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert ckpt_step(d) == 4  # the kill lost steps 5-6; metrics.jsonl may hold rows past 4
    assert not (d / "summary.json").exists()

    r = train(args + ["resume=true"], d, env={"TRICKS_TEST_KILL_AT_STEP": "15"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert ckpt_step(d) == 12

    # checkpoints at 16, then 20: the 2nd file written by this process is killed mid-write
    r = train(args + ["resume=true"], d, env={"TRICKS_TEST_KILL_IN_SAVE": "2"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert list((d / "checkpoints").glob(".last.pt.*.tmp")), "the half-written temp file"
    assert ckpt_step(d) == 16  # the previous checkpoint is intact

    r = train(args + ["resume=true"], d)
    assert r.returncode == 0, r.stderr
    assert not list((d / "checkpoints").glob(".*.tmp")), "stale temp files are cleaned up"
    assert_same_run(d, want)


@pytest.mark.slow
def test_sigterm_checkpoints_then_resume_is_exact(tmp_path, baseline):
    """SIGTERM (preemption): the step in flight finishes, a checkpoint of exactly that step is
    written, status interrupted, non-zero exit; resuming completes as if never stopped."""
    want = baseline
    d = tmp_path / "run"
    r = train(ARGS, d, env={"TRICKS_TEST_KILL_AT_STEP": "7:TERM"})
    assert r.returncode not in (0, -signal.SIGTERM), r.stderr
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["steps"] == 7 and "SIGTERM" in s["error"]
    assert ckpt_step(d) == 7  # step 7 is not a checkpoint step: written because of the signal
    assert "interrupted" in r.stderr
    assert not (d / ".hydra" / "overrides.yaml").read_text().count("resume")

    r = train(ARGS + ["resume=true"], d)
    assert r.returncode == 0, r.stderr
    assert_same_run(d, want)
    # the original launch record is kept; config.yaml groups with never-resumed runs
    assert "resume" not in (d / ".hydra" / "overrides.yaml").read_text()
    assert "resume: false" in (d / "config.yaml").read_text()


@pytest.mark.slow
def test_external_sigkill_at_an_unplanned_moment(tmp_path, baseline):
    """Killed from outside as soon as the first metrics row appears, wherever the loop is."""
    want = baseline
    d = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "train", *ARGS, f"hydra.run.dir={d}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            m = d / "metrics.jsonl"
            if m.exists() and m.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not (d / "summary.json").exists(), "killed before the end"

    if not (d / "checkpoints" / "last.pt").exists():  # killed before the first checkpoint
        r = train(ARGS, d)
    else:
        r = train(ARGS + ["resume=true"], d)
    assert r.returncode == 0, r.stderr
    assert strip_timing(read_rows(d)) == strip_timing(read_rows(want))
    assert summary_figures(d) == summary_figures(want)


def test_resume_from_path_into_a_new_dir(tmp_path):
    """resume=PATH continues another run's checkpoint in a new run directory; max_steps may
    change on resume (extending a run), the rest of the config must match."""
    from conftest import train_run

    args = [
        "trainer.batch_size=64",
        "trainer.log_every=2",
        "trainer.checkpoint_every=4",
        "trainer.progress=false",
        "trainer.eval_every=4",
    ]
    part = train_run(args + ["trainer.max_steps=4"], tmp_path / "part")
    assert part["steps"] == 4 and part["status"] == "completed"
    ckpt = tmp_path / "part" / "checkpoints" / "last.pt"
    s = train_run(args + ["trainer.max_steps=8", f"resume={ckpt}"], tmp_path / "cont")
    assert s["resumed"] and s["steps"] == 8 and s["status"] == "completed"
    rows = read_rows(tmp_path / "cont")
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert strip_timing(rows[:2]) == strip_timing(read_rows(tmp_path / "part"))


def _as_before_eval_test(cfg: dict) -> dict:
    """The config a run written before trainer.eval_test existed has."""
    old = json.loads(json.dumps(cfg))
    del old["trainer"]["eval_test"]
    return old


def test_a_run_from_before_a_new_key_reruns_and_resumes(tmp_path):
    """A run dir written by code from before a root-config key existed (trainer.eval_test) is
    the same config when the re-run leaves the key at its default: a completed run is skipped,
    an interrupted one resumes its checkpoint. Set to anything else, or a missing key that is
    not the root config's (a model's), it still differs, and both checks name the key."""
    from omegaconf import OmegaConf

    from runner.checkpoint import check_compatible
    from runner.config import compose, to_container
    from runner.errors import ConfigError
    from runner.main import sweep_job_plan

    cfg = compose([])
    old = _as_before_eval_test(to_container(cfg))
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert sweep_job_plan(cfg, tmp_path) == "resume"
    check_compatible(old, to_container(cfg))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert sweep_job_plan(cfg, tmp_path) == "skip"

    best = compose(["trainer.eval_test=best"])
    with pytest.raises(ConfigError, match=r"trainer\.eval_test differs"):
        sweep_job_plan(best, tmp_path)
    with pytest.raises(ConfigError, match=r"trainer\.eval_test=None.*trainer\.eval_test='best'"):
        check_compatible(old, to_container(best))
    no_width = json.loads(json.dumps(old))
    del no_width["model"]["hidden"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(no_width)))
    with pytest.raises(ConfigError, match=r"model\.hidden differs"):
        sweep_job_plan(cfg, tmp_path)
    with pytest.raises(ConfigError, match=r"model\.hidden"):
        check_compatible(no_width, to_container(cfg))


def test_a_study_job_interrupted_before_a_new_key_resumes(tmp_path):
    """What a study resumed across that commit meets: a job's run dir with the older config
    and checkpoint, its summary 'failed' (the earlier refusal) -- the study's worker resumes it
    from the checkpoint to a completed run, the rows before the checkpoint kept."""
    import torch
    from omegaconf import OmegaConf

    from runner.study.worker import run_one

    from conftest import train_run

    ov = [
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "trainer.checkpoint_every=4",
        "trainer.log_every=2",
        "trainer.progress=false",
        "trainer.batch_size=32",
    ]
    d = tmp_path / "trial"
    first = train_run(ov, d)
    assert first["status"] == "completed" and first["steps"] == 8
    rows = read_rows(d)
    ck = torch.load(d / "checkpoints" / "last.pt", weights_only=False)
    ck["config"] = _as_before_eval_test(ck["config"])
    torch.save(ck, d / "checkpoints" / "last.pt")
    cfg = OmegaConf.to_container(OmegaConf.load(d / "config.yaml"))
    (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(_as_before_eval_test(cfg))))
    (d / "summary.json").write_text(json.dumps({"status": "failed", "error": "refused"}))

    assert run_one(ov, d) == "completed"
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "completed" and s["resumed"] is True and s["steps"] == 8
    assert strip_timing(read_rows(d)) == strip_timing(rows)
