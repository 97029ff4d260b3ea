"""A study worker: pulls the next run of the ledger, trains it, records its result; again.

`tricks worker --storage URL [--study NAME]` on any machine that sees the study's run root, or
the coordinator's `--parallel N` local workers (the same code, started as processes). One process
imports torch once, builds each dataset once (runner.build's opt-in data memo) and trains run
after run in-process with `runner.main.run`, one torch thread by default on CPU. A run dir is an
ordinary `tricks train` run dir; a run re-queued after its worker died resumes from its own
checkpoints/last.pt (runner.main.sweep_job_plan: skip / resume / fresh).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from runner.config import compose
from runner.errors import ConfigError
from runner.runs import write_failed
from runner.study import results as R
from runner.study.inputs import ROOT
from runner.study.ledger import Beat, Ledger
from runner.study.records import LOCAL_PIN, RunRecord

#: the status of a run whose run dir holds another config's run (written by other code): the
#: study stops on it (runner.study.protocol), the dir untouched, rather than count a failed trial
REFUSED = "refused: "
POLL = 0.25


def run_one(overrides: list[str], run_dir: Path) -> str:
    """Train (or skip, or resume) one run in this process; its failure is recorded in its run
    dir's summary.json, never raised. Returns the status (REFUSED + why: nothing written)."""
    from runner.main import (  # torch: in the worker's process, not the coordinator's
        run,
        sweep_job_plan,
    )

    run_dir = Path(run_dir)
    try:
        cfg = compose(list(overrides))
        try:
            plan = sweep_job_plan(cfg, run_dir)  # skip / resume / fresh, as a re-run sweep does
        except ConfigError as e:  # another config's run: not this trial's result; left as is
            return f"{REFUSED}{e.problem}"
        if plan == "skip":
            return "completed"
        if plan == "resume":
            cfg.resume = True
        return run(cfg, run_dir).get("status", "failed")
    except ConfigError as e:  # e.g. a sampled value the config rejects: a failed trial
        write_failed(run_dir, str(e))
    except Exception as e:
        write_failed(run_dir, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return "failed"


@contextlib.contextmanager
def run_lock(root: Path, key: str):
    """One process in a run dir at a time. A worker taken for dead (its beats late on a loaded
    machine, a network partition) may still be training when its re-queued run is claimed: the
    claimant waits here, then finds the run completed (skip) or resumes its checkpoint. A POSIX
    lock (lockf: NFS's lock manager honours it), released by the kernel when a holder dies."""
    f = Path(root) / "runs" / "_locks" / (key.replace("/", "__") + ".lock")
    f.parent.mkdir(parents=True, exist_ok=True)
    with open(f, "a") as fh:
        fcntl.lockf(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)


def result_of(run_dir: Path, rec: RunRecord, select: str, metric: str) -> dict:
    """The figures the ledger keeps of a finished run (study.json still reads the run dir):
    `value` is the select metric for a tune run, the metric for a confirmation, the seconds per
    step for a timing run; `steps` from summary.json (a run may stop early)."""

    s = R.summary_of(run_dir)
    if rec.phase == "cost":
        value = R.sec_per_step_of(s)
    else:
        value = R.run_value(run_dir, select if rec.phase == "tune" else metric)
    keep = ("steps", "train_seconds", "wall_seconds")
    return {"value": value, **{k: s[k] for k in keep if k in s}}


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # the coordinator is gone: its restart reaps this worker's run at once
        time.sleep(0.5)


def identity(local: int | None) -> dict:
    host = socket.gethostname()
    wid = f"{host}-{os.getpid()}" + (f"-local{local}" if local is not None else "")
    return {"id": wid, "host": host, "pid": os.getpid()}


def serve(ledger: Ledger, local: int | None = None, parent: int | None = None, idle=None) -> int:
    """Pull and train runs until the study is done (or, with `idle` seconds, nothing was
    queued for that long; a local worker also stops when its coordinator is gone). Returns the
    number of runs trained."""
    import torch  # the worker's own process: the coordinator never imports it

    from runner import build  # torch, with the import above

    if parent:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(threads)
    build.memoize_data(True)
    me, pins = identity(local), ((LOCAL_PIN,) if local == 0 else ())
    select, metric = ledger.meta("select"), ledger.meta("metric")
    n, since, reaped = 0, time.time(), 0.0
    with Beat(ledger, me) as beat:
        while True:
            got = ledger.claim(me, pins)
            if got is None:
                if ledger.meta("state") == "done" or (idle and time.time() - since > idle):
                    return n
                if time.time() - reaped > ledger.heartbeat:  # the coordinator may be down
                    ledger.reap()
                    reaped = time.time()
                time.sleep(POLL)
                continue
            beat.trial = (got[0], got[1].key)
            status = train(ledger, got[0], got[1], select, metric)
            beat.trial, since, n = None, time.time(), n + 1
            if status == "interrupted":
                return n


def train(ledger: Ledger, trial_id: int, rec: RunRecord, select, metric) -> str:
    run_dir = ledger.root / rec.key
    print(f"--- {rec.key} (attempt {rec.attempt})", flush=True)
    with run_lock(ledger.root, rec.key):
        status = run_one(list(rec.overrides), run_dir)
    if status == "interrupted":  # Ctrl-C / SIGTERM: checkpointed; back to the queue
        ledger.requeue(trial_id, "interrupted")
        return status
    if status.startswith(REFUSED):
        ledger.finish(trial_id, "failed", {}, status)
        return status

    error = None if status == "completed" else R.error_of(run_dir)
    ledger.finish(trial_id, status, result_of(run_dir, rec, select, metric), error)
    return status


# -- the coordinator's local workers -----------------------------------------------------------


class Local:
    """`n` local worker processes (`tricks worker ... --local K`), restarted when one dies."""

    def __init__(self, ledger: Ledger, n: int, log_dir: Path):
        self.ledger, self.n, self.log_dir = ledger, n, Path(log_dir)
        self.procs: dict[int, object] = {}

    def _spawn(self, k: int):

        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        cmd = [sys.executable, "-m", "runner.cli", "worker", "--storage", self.ledger.url]
        cmd += ["--study", self.ledger.name, "--root", str(self.ledger.root), "--local", str(k)]
        cmd += ["--parent", str(os.getpid()), "--heartbeat", str(self.ledger.heartbeat)]
        with open(self.log_dir / f"worker-{k}.log", "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def ensure(self, n: int | None = None) -> None:
        """`n` (default: all) workers running; a dead one's run is re-queued by the reaper."""
        for k in range(max(self.n, 1) if n is None else n):
            p = self.procs.get(k)
            if p is None or p.poll() is not None:
                self.procs[k] = self._spawn(k)

    def close(self, timeout: float = 15) -> None:
        deadline = time.time() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.time()))
            except Exception:
                p.kill()
                p.wait()
        self.procs = {}
