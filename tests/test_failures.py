"""Clean failures: NaN/inf in the loss or the gradients stops the run naming the step, the loss
parts and the active tricks (status failed), or is skipped with trainer.on_nan=skip; a failing
logger never stops training; in a sweep a failing job records its failure and the sweep goes on,
and re-running the sweep skips completed jobs and resumes interrupted ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from runner.log import Sink
from runner.tricks import Trick

from conftest import FAST, cli, read_rows, train_run


class InjectInf(Trick):
    """Test-only trick: makes the loss (or one gradient) non-finite at chosen steps."""

    def __init__(self, steps=(3,), where: str = "loss", order=None):
        super().__init__(order)
        self.steps, self.where = set(steps), where

    def loss(self, state, batch, next):
        out = next(batch)
        if self.where == "loss" and state.step + 1 in self.steps:
            out.loss = out.loss * float("inf")
            out.parts["boom"] = out.loss.detach()
        return out

    def backward(self, state, out, batch, next):
        next(out, batch)
        if self.where == "grad" and state.step + 1 in self.steps:
            state.params[0].grad[0] = float("inf")


def inject(steps, where="loss"):
    return [
        f"+reg.inject._target_={__name__}.InjectInf",
        f"+reg.inject.steps={list(steps)}",
        f"+reg.inject.where={where}",
    ]


def test_nan_loss_stops_naming_step_parts_and_tricks(run_dir):
    s = train_run(FAST + inject([3]) + ["clip=norm"], run_dir)
    assert s["status"] == "failed"
    err = s["error"]
    assert "non-finite loss" in err and "at step 3" in err
    assert "boom=inf" in err  # the loss parts
    assert "active tricks:" in err and "inject" in err and "normclip" in err.lower()
    assert "\n" not in err
    assert s["steps"] == 2  # the bad step did not count
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == err


def test_inf_gradient_with_finite_loss_stops(run_dir):
    s = train_run(FAST + inject([2], "grad"), run_dir)
    assert s["status"] == "failed"
    assert "non-finite gradients" in s["error"] and "at step 2" in s["error"]


def test_huge_lr_fails_cleanly(run_dir):
    s = train_run(FAST + ["optimizer=sgd", "optimizer.lr=1e30", "trainer.max_steps=20"], run_dir)
    assert s["status"] == "failed" and "non-finite" in s["error"]
    assert "optimizer.lr" in s["error"] and "on_nan=skip" in s["error"]  # what to do about it


def test_on_nan_skip_skips_the_update_and_counts(tmp_path):
    """Skipped steps leave the weights as they were: a run with steps 2 and 4 poisoned ends with
    finite figures, and the skips are counted in summary.json."""
    s = train_run(FAST + inject([2, 4]) + ["trainer.on_nan=skip"], tmp_path / "a")
    assert s["status"] == "completed" and s["nan_skips"] == 2 and s["steps"] == 6
    assert math.isfinite(s["final/test/loss"])
    g = train_run(FAST + inject([2], "grad") + ["trainer.on_nan=skip"], tmp_path / "b")
    assert g["status"] == "completed" and g["nan_skips"] == 1


def test_skipped_step_does_not_move_the_weights(tmp_path):
    """on_nan=skip at step 1: the checkpointed weights after that step are the initial ones."""
    import warnings

    from runner import checkpoint

    args = FAST + ["trainer.max_steps=1", "trainer.checkpoint_every=1", "trainer.on_nan=skip"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = train_run(args + inject([1]), tmp_path / "skip")
    assert s["nan_skips"] == 1
    # the skipped step keeps its slot of the schedule, without torch's warning about the order
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    skipped = checkpoint.load(tmp_path / "skip" / "checkpoints" / "last.pt")["model"]
    # the same config with zero steps is not allowed; compare with the model as built
    from runner import build
    from runner.config import compose
    from runner.engine import seed_everything

    cfg = compose(args)
    seed_everything(cfg.seed, True)
    data = build.data(cfg)
    model = build.model(cfg, data.info)
    for k, v in model.state_dict().items():
        assert torch.equal(v, skipped[k]), k


class RaisingSink(Sink):
    """A dashboard that fails at every call (W&B unreachable, disk of the dashboard full...)."""

    def __init__(self, when: str = "log"):
        self.when = when

    def start(self, run_dir, config):
        if self.when in ("start", "all"):
            raise ConnectionError("dashboard unreachable")

    def log(self, row):
        if self.when in ("log", "all"):
            raise ConnectionError("dashboard unreachable")

    def finish(self, summary):
        if self.when in ("finish", "all"):
            raise ConnectionError("dashboard unreachable")


@pytest.mark.parametrize("when", ["start", "log", "finish", "all"])
def test_failing_logger_never_stops_training(when, tmp_path, capfd):
    args = FAST + [f"+logger._target_={__name__}.RaisingSink", f"+logger.when={when}"]
    s = train_run(args, tmp_path / "run")
    assert s["status"] == "completed" and s["steps"] == 6
    assert [r["step"] for r in read_rows(tmp_path / "run")] == [2, 3, 4, 6]
    err = capfd.readouterr().err
    assert err.count("warning: logger RaisingSink failed") == 1


# -- sweeps ------------------------------------------------------------------------------------

SWEEP = ["-m", "optimizer=sgd", "optimizer.lr=0.05,1e30", *FAST]


def _snapshot(d: Path) -> dict:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and ".hydra" not in p.parts and p.name != "main.log"
    }


@pytest.mark.slow
def test_sweep_failure_recorded_rerun_skips_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = ["train", *SWEEP, f"hydra.sweep.dir={sweep}"]

    # 1. preempted in its first job: the sweep stops, the job is interrupted with a checkpoint
    r = cli(cmd, tmp_path, env={"TRICKS_TEST_KILL_AT_STEP": "4:TERM"})
    assert r.returncode == 3, r.stderr
    s0 = json.loads((sweep / "0" / "summary.json").read_text())
    assert s0["status"] == "interrupted" and s0["steps"] == 4
    assert not (sweep / "1").exists()
    assert f"hydra.sweep.dir={sweep}" in r.stderr  # how to retry

    # 2. the same command: job 0 resumes and completes, job 1 diverges and records its failure,
    #    the sweep goes on to the end
    r = cli(cmd, tmp_path)
    assert r.returncode == 1, r.stderr
    s0 = json.loads((sweep / "0" / "summary.json").read_text())
    assert s0["status"] == "completed" and s0["resumed"] is True and s0["steps"] == 6
    s1 = json.loads((sweep / "1" / "summary.json").read_text())
    assert s1["status"] == "failed" and "non-finite" in s1["error"]
    assert "1 job(s) did not complete" in r.stderr

    # 3. again: the completed job is skipped, untouched; the failed one is retried
    before = _snapshot(sweep / "0")
    r = cli(cmd, tmp_path)
    assert r.returncode == 1
    assert f"skip {sweep / '0'}: completed already" in r.stderr
    assert _snapshot(sweep / "0") == before

    # 4. another sweep into the same dir: refused job by job, nothing of the old runs touched
    before1 = _snapshot(sweep / "1")
    r = cli(
        ["train", "-m", "optimizer=sgd", "optimizer.lr=0.07", *FAST, f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    assert r.returncode != 0
    assert "holds a run of another config (optimizer.lr differs)" in r.stderr
    assert _snapshot(sweep / "0") == before and _snapshot(sweep / "1") == before1


@pytest.mark.parametrize(
    "keep,left", [("all", {"last.pt", "best.pt"}), ("best", {"best.pt"}), ("none", None)]
)
def test_keep_checkpoints_after_a_completed_run(keep, left, run_dir):
    s = train_run(FAST + [f"trainer.keep_checkpoints={keep}"], run_dir)
    assert s["status"] == "completed"
    ck = run_dir / "checkpoints"
    assert (left is None and not ck.exists()) or {p.name for p in ck.iterdir()} == left
    assert (run_dir / "summary.json").exists() and (run_dir / "metrics.jsonl").exists()


def test_keep_checkpoints_none_keeps_a_failed_runs_checkpoint(run_dir):
    s = train_run(FAST + inject([5]) + ["trainer.keep_checkpoints=none"], run_dir)
    assert s["status"] == "failed"
    assert (run_dir / "checkpoints" / "last.pt").exists()  # resume / post-mortem need it


def test_inf_gradient_between_log_steps_is_caught_by_the_next_steps_loss(run_dir):
    """CPU checks the loss every step (a free host read) and the gradients on log steps: an
    inf gradient at step 3 (log steps 2, 4) poisons the update, and step 4's loss stops the run."""
    s = train_run(FAST + inject([3], "grad"), run_dir)
    assert s["status"] == "failed"
    assert "non-finite loss" in s["error"] and "at step 4" in s["error"]
    assert s["steps"] == 3
