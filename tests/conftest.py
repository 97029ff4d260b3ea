"""Shared test helpers.

- `train_run(overrides, run_dir)`: compose like `tricks train` and run in-process (fast).
- `cli(args, cwd)`: the real `tricks` command in a subprocess, as a user runs it.
- `FAST`: overrides for a few-step run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
FAST = [
    "trainer.max_steps=6",
    "trainer.eval_every=3",
    "trainer.log_every=2",
    "trainer.progress=false",
    "trainer.batch_size=32",
]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def conf_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def train_run(overrides: list[str], run_dir: Path) -> dict:
    """Compose `overrides` as `tricks train` does and train into run_dir; returns the summary."""
    from runner.config import compose
    from runner.main import run

    cfg = compose(list(overrides))
    return run(cfg, run_dir)


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


TIMING_KEYS = ("samples_per_sec", "wall_seconds", "train_seconds", "peak_mem_bytes")


def strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def cli(
    args: list[str],
    cwd: Path,
    env: dict | None = None,
    timeout: int = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run the real GPU path: skipped where torch sees no CUDA device."""
    cuda = [it for it in items if it.get_closest_marker("cuda")]
    if not cuda:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (scripts/gpu_check.py on a GPU)")
        for it in cuda:
            it.add_marker(skip)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"
