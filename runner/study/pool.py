"""Run many training runs in N long-lived worker processes.

Each worker imports torch once, builds each dataset once (runner.build's opt-in data memo) and
trains run after run in-process with `runner.main.run`, one torch thread each on CPU by default.
A job is (overrides, run_dir); its run dir is an ordinary `tricks train` run dir. A worker that
dies (segfault, out of memory, killed) costs its one run, recorded as failed; a new worker takes
its place. Workers exit on their own when the study process is gone (killed), so a re-run never
races a leftover worker on the same run dir.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Job:
    overrides: list[str]
    run_dir: Path
    label: str = ""  # e.g. "main/fgm" (the progress view's best-so-far key)


def status_of(run_dir: Path) -> str | None:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _write_failed(run_dir: Path, error: str) -> None:
    from runner.log import write_json_atomic

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": error})


#: the status of a job whose run dir holds another config's run (written by other code): the
#: study stops on it (runner.study.protocol), the dir untouched, rather than count a failed trial
REFUSED = "refused: "


def run_one(overrides: list[str], run_dir: Path) -> str:
    """Train (or skip, or resume) one job in this process; its failure is recorded in its run
    dir's summary.json, never raised. Returns the status (REFUSED + why: nothing written)."""
    from runner.config import compose
    from runner.errors import ConfigError
    from runner.main import run, sweep_job_plan

    run_dir = Path(run_dir)
    try:
        cfg = compose(overrides)
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
        _write_failed(run_dir, str(e))
    except Exception as e:
        _write_failed(run_dir, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return "failed"


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _worker(conn, parent: int, threads: int, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)  # the runs' one-line reports go to the worker's log, not over the view
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch

    from runner import build

    torch.set_num_threads(threads)
    build.memoize_data(True)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        i, overrides, run_dir = msg
        print(f"--- {run_dir}", flush=True)
        conn.send((i, run_one(overrides, Path(run_dir))))


class _main_hidden:
    """A spawned worker re-runs the parent's __main__ script unless told it has none: a user's
    script (or a benchmark) calling `execute` without an `if __name__ == "__main__"` guard would
    start again in every worker. The worker needs nothing from __main__."""

    def __enter__(self):
        self.main = sys.modules.get("__main__")
        self.saved = {
            k: getattr(self.main, k) for k in ("__file__", "__spec__") if hasattr(self.main, k)
        }
        if "__file__" in self.saved:
            del self.main.__file__
        self.main.__spec__ = None

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.main, k, v)
        if "__spec__" not in self.saved:
            del self.main.__spec__


class Pool:
    """N workers. `run(jobs, on_done)` blocks until every job has a status."""

    def __init__(self, n: int, log_dir: Path, threads: int = 1):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")  # no fork of a process holding torch threads
        self.n, self.threads, self.log_dir = max(1, n), threads, Path(log_dir)
        self.workers: list = []

    def _spawn(self, k: int):
        a, b = self.ctx.Pipe()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        p = self.ctx.Process(
            target=_worker,
            daemon=True,
            args=(b, os.getpid(), self.threads, str(self.log_dir / f"worker-{k}.log")),
        )
        with _main_hidden():
            p.start()
        b.close()
        return {"proc": p, "conn": a, "job": None, "k": k}

    def _send(self, w: dict) -> None:
        i, job = w["job"]
        msg = (i, job.overrides, str(job.run_dir))
        try:
            w["conn"].send(msg)
        except OSError:  # it died while idle: a fresh worker takes the job
            w.update({**self._spawn(w["k"]), "job": w["job"]})
            w["conn"].send(msg)

    def run(
        self, jobs: list[Job], on_done=lambda job, status: None, width: int | None = None
    ) -> dict[int, str]:
        """Every job's status; `width` workers at most (1: the jobs run in order, in one
        process, as the interleaved cost measurement needs)."""
        from multiprocessing.connection import wait

        todo = list(enumerate(jobs))
        out: dict[int, str] = {}
        width = min(self.n, width or self.n)
        while len(self.workers) < min(width, len(todo)):
            self.workers.append(self._spawn(len(self.workers)))
        while len(out) < len(jobs):
            for w in self.workers[:width]:
                if w["job"] is None and todo:
                    w["job"] = todo.pop(0)
                    self._send(w)
            busy = [w for w in self.workers if w["job"] is not None]
            if not busy:  # never waits on nothing (that would block for ever)
                raise RuntimeError("study pool: jobs left but no worker holds one")
            ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy])
            for w in busy:
                i, job = w["job"]
                if w["conn"] in ready:
                    try:
                        _, status = w["conn"].recv()
                    except (EOFError, OSError):
                        status = None
                elif w["proc"].sentinel in ready:
                    status = None
                else:
                    continue
                if status is None:  # the worker died mid-run: the run is failed, the study goes on
                    if status_of(job.run_dir) != "completed":
                        _write_failed(
                            job.run_dir,
                            f"worker process died (exit code "
                            f"{w['proc'].exitcode}); see {self.log_dir}",
                        )
                    status = status_of(job.run_dir) or "failed"
                    w.update(self._spawn(w["k"]))
                w["job"] = None
                out[i] = status
                on_done(job, status)
        return out

    def close(self) -> None:
        for w in self.workers:
            try:
                w["conn"].send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self.workers:
            w["proc"].join(timeout=10)
            if w["proc"].is_alive():
                w["proc"].kill()
        self.workers = []
