"""Shared test helpers.

- `train_run(overrides, run_dir)`: compose like `tricks train` and run in-process (fast).
- `cli(args, cwd)`: the real `tricks` command in a subprocess, as a user runs it.
- `FAST`: overrides for a few-step run.
- `make_run(root, name, value, ...)`: a synthetic run directory as `tricks train` writes it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


TIMING_KEYS = (
    "samples_per_sec",
    "wall_seconds",
    "process_wall_seconds",
    "train_seconds",
    "peak_mem_bytes",
)


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


# synthetic run directories, shared by the compare and report tests
BASE_CONFIG = {
    "model": {"_target_": "runner.models.mlp.MLP", "hidden": 100, "depth": 2, "dropout": 0.0},
    "optimizer": {
        "_target_": "torch.optim.AdamW",
        "lr": 0.01,
        "weight_decay": 0.0,
        "betas": [0.9, 0.999],
    },
    "dataset": {"_target_": "runner.data.mnist1d.build", "num_samples": 5000},
    "clip": {},
    "schedule": {"_target_": "runner.schedule.cosine", "warmup_steps": 0},
    "logger": {},
    "seed": 0,
    "resume": False,
    "trainer": {"max_steps": 6, "batch_size": 32, "progress": False, "log_every": 2},
}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}


def make_run(
    root: Path,
    name: str,
    value: float | None,
    seed: int = 0,
    optimizer=None,
    status: str = "completed",
    summary_extra=None,
    curve=None,
    reg=None,
    config_extra=None,
    write_summary=True,
) -> Path:
    """A run directory as `tricks train` writes it: config.yaml, metrics.jsonl, summary.json."""
    d = root / name
    d.mkdir(parents=True)
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["seed"] = seed
    if optimizer is not None:
        cfg["optimizer"] = copy.deepcopy(optimizer)
    if reg:
        cfg["reg"] = reg
    for k, v in (config_extra or {}).items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    curve = curve if curve is not None else [0.3, 0.5, value if value is not None else 0.1]
    rows = []
    for i, v in enumerate(curve, 1):
        rows.append({"step": 2 * i, "epoch": 0.1 * i, "train/loss": 2.0 / i, "lr": 0.01})
        rows.append(
            {"step": 2 * i, "epoch": 0.1 * i, "val/acc": v, "test/acc": v, "test/loss": 1 - v}
        )
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if write_summary:
        s = {
            "best/val/acc": value,
            "test/acc": value,
            "final/test/acc": value,
            "test/loss": None if value is None else 1 - value,
            "steps": 6,
            "wall_seconds": 10.0,
            "train_seconds": 8.0,
            "samples_per_sec": 1000.0,
            "peak_mem_bytes": 100 * 2**20,
            "status": status,
        }
        if status != "completed":
            s["error"] = "NaN loss at step 4"
        s.update(summary_extra or {})
        (d / "summary.json").write_text(json.dumps(s))
    return d
