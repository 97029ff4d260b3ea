"""`tricks study ... --slurm N`: N `tricks worker` processes as SLURM jobs, through submitit (one
job array), or by hand with the `sbatch --array` script `sbatch_text` renders (docs/scale.md).

A worker needs only the storage URL and the study dir (a filesystem the nodes see): a
server storage (PostgreSQL), never SQLite on a shared filesystem (it corrupts over NFS,
optuna#815)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from runner.errors import ConfigError
from runner.study.inputs import ROOT
from runner.study.ledger import Ledger


def worker_args(url: str, name: str, root: Path, heartbeat: int) -> list[str]:
    return [
        "-m",
        "runner.cli",
        "worker",
        "--storage",
        url,
        "--study",
        name,
        "--root",
        str(Path(root).resolve()),
        "--heartbeat",
        str(heartbeat),
    ]


def sbatch_text(n: int, url: str, name: str, root: Path, heartbeat: int, params=()) -> str:
    """An `sbatch` script starting N workers as a job array (`params`: `#SBATCH` options as
    KEY=VALUE, e.g. partition=gpu, gres=gpu:1, time=24:00:00)."""
    lines = ["#!/bin/bash", f"#SBATCH --array=0-{n - 1}", "#SBATCH --job-name=tricks-worker"]
    lines += [f"#SBATCH --output={Path(root).resolve()}/runs/_logs/slurm-%A_%a.log"]
    lines += [f"#SBATCH --{k}={v}" for k, v in (p.split("=", 1) for p in params)]
    cmd = [sys.executable, *worker_args(url, name, root, heartbeat)]
    lines += [
        "# each task: one worker pulling runs from the ledger until the study is done",
        f"cd {shlex.quote(str(ROOT))}",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        " ".join(shlex.quote(c) for c in cmd),
    ]
    return "\n".join(lines) + "\n"


def worker_job(url: str, name: str, root: str, heartbeat: int) -> int:
    """What each SLURM job runs (pickled by submitit): one worker; the runs it trained."""
    from runner.study.worker import serve  # in the SLURM job: the worker imports torch there

    return serve(Ledger(url, name, heartbeat=heartbeat, root=Path(root)))


def submit_workers(n: int, ledger: Ledger, params=(), executor=None) -> list:
    """Submit N worker jobs (one array) with submitit; returns the jobs. `executor`: a submitit
    executor (default: SLURM's, with `params` as its slurm_* parameters)."""
    if executor is None and ledger.url.startswith("sqlite"):
        raise ConfigError(
            "--slurm",
            "needs a storage every node reaches: SQLite on a shared filesystem corrupts",
            "--storage postgresql://USER@HOST/DB (docs/scale.md, A study on a cluster)",
        )
    import submitit  # an optional extra (study): only where --slurm asks for it

    if executor is None:
        try:
            executor = submitit.AutoExecutor(
                folder=ledger.root / "runs" / "_slurm", cluster="slurm"
            )
        except Exception as e:
            raise ConfigError(
                "--slurm",
                f"no SLURM here ({e})",
                "a SLURM login node, or the sbatch recipe of docs/scale.md",
            )
        kw = {f"slurm_{k}": v for k, v in (p.split("=", 1) for p in params)}
        executor.update_parameters(slurm_array_parallelism=n, name="tricks-worker", **kw)
    args = [(ledger.url, ledger.name, str(ledger.root), ledger.heartbeat)] * n
    return executor.map_array(worker_job, *zip(*args))
