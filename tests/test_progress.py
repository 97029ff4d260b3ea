"""A sweep's progress line: done / total, failed, elapsed, ETA; rich on a terminal, plain lines
without control characters in a pipe."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from runner.log.progress import SweepCallback, SweepProgress, sweep_total

from conftest import FAST, ROOT, cli

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_plain_lines_every_tenth_without_control_characters(capsys):
    p = SweepProgress(20, "study", enabled=False)
    for i in range(1, 21):
        p.update(i, failed=1 if i > 5 else 0, note=f"best so far: none {i}")
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert [l.split()[1] for l in lines] == [f"{i}/20" for i in range(2, 21, 2)]
    assert lines[-1].startswith("study  20/20  failed 1  elapsed ")
    assert "eta 0:00:00  best so far: none 20" in lines[-1]
    assert not any(CONTROL.search(l) for l in lines)


def test_the_eta_leaves_out_jobs_found_done_already(capsys, monkeypatch):
    """A resumed study finds 6 of 10 runs done (no time spent), then runs one in 60 s: 3 left
    at that pace is 3 min (counting the 6 as instant would say 0:00:26)."""
    import runner.log.progress as prog

    now = [1000.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: now[0])
    p = SweepProgress(10, "study", enabled=False)
    for i in range(1, 7):
        p.update(i, skipped=i)
    assert p.eta() == "-"  # nothing run here yet: no pace to go by
    now[0] += 60
    p.update(7, skipped=6)
    assert p.eta() == "0:03:00"
    p.close()
    assert "eta -" in capsys.readouterr().err.splitlines()[0]


def test_the_callback_counts_failed_jobs_and_knows_the_total(capsys):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "trainer": {"progress": False},
            "hydra": {
                "sweeper": {"params": None},
                "job": {"num": 0},
                "overrides": {"task": ["optimizer=adamw,sgd", "seed=0,1,2", "trainer.max_steps=3"]},
            },
        }
    )
    assert sweep_total(cfg) == 6
    cb = SweepCallback()
    cb.on_multirun_start(cfg)
    for num, value in enumerate([0.5, float("nan"), 0.7, 0.6, 0.1, 0.2]):
        cfg.hydra.job.num = num
        r = JobReturn()
        r.status, r._return_value = JobStatus.COMPLETED, value
        cb.on_job_end(cfg, r)
    cb.on_multirun_end(cfg)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("sweep  6/6  failed 1  ") and last.endswith(
        "best val/acc 0.7000 (job 2)"
    )


def _sweep_args(tmp_path):
    fast = [a for a in FAST if not a.startswith("trainer.progress")]
    return ["train", "-m", "seed=0,1", *fast, f"hydra.sweep.dir={tmp_path / 'sw'}"]


def test_a_piped_multirun_prints_plain_sweep_lines(tmp_path):
    r = cli(_sweep_args(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sweep = [l for l in r.stderr.splitlines() if l.startswith("sweep  ")]
    assert [l.split()[1] for l in sweep] == ["1/2", "2/2"]
    assert "failed 0" in sweep[-1] and "eta " in sweep[-1]
    assert not CONTROL.search(r.stderr)


@pytest.mark.skipif(shutil.which("script") is None, reason="no `script` (util-linux) for a pty")
def test_a_multirun_on_a_terminal_shows_the_sweep_line(tmp_path):
    import shlex

    cmd = " ".join(
        shlex.quote(a) for a in [sys.executable, "-m", "runner.cli", *_sweep_args(tmp_path)]
    )
    env = {
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "160",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run(
        ["script", "-qfec", cmd, "/dev/null"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\x1b[" in r.stdout  # a live display, not plain lines
    text = ANSI.sub("", r.stdout)
    assert re.search(r"sweep .*2/2 failed 0 .*eta 0:00:00", text), text[-2000:]
    assert re.search(r"train .*/6", text)  # the run's own bar, in the same display


@pytest.mark.slow
def test_a_joblib_multirun_says_so_and_counts_the_jobs_at_the_end(tmp_path):
    fast = [a for a in FAST if not a.startswith("trainer.progress")]
    r = cli(
        [
            "train",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "seed=0,1",
            *fast,
            f"hydra.sweep.dir={tmp_path / 'sw'}",
        ],
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = [l for l in r.stderr.splitlines() if l.startswith("sweep  ")]
    assert sweep[0].startswith("sweep  2 jobs  (JoblibLauncher runs them in other processes")
    assert sweep[-1].startswith("sweep  2/2  failed 0  elapsed ")
    assert not CONTROL.search(r.stderr)
