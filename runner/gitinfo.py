"""Where a result came from: which commit, whether the files its numbers depend on were edited, and
which machine ran it (CPUs with different vector units run different float kernels, so the same
commit, config and seed give bit-identical numbers on one machine and different ones on another:
a study records the machine beside the commit)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

# The files a run's numbers depend on: code, configs and study files (not docs or results).
RUN_INPUTS = (
    "runner",
    "conf",
    "scripts",
    "pyproject.toml",
    ":(glob)experiments/*/study.yaml",
    ":(glob)experiments/*/analysis.py",
)


def commit_info(root: str | Path) -> tuple[str, bool]:
    """(short sha of HEAD, dirty): dirty when a tracked run input differs from HEAD. Docs and the
    results a study writes do not count. ("unknown", False) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True, capture_output=True
        )
        if sha.returncode != 0:
            return "unknown", False
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *RUN_INPUTS],
            cwd=root,
            text=True,
            capture_output=True,
        )
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except OSError:
        return "unknown", False


@functools.cache
def source_commit() -> tuple[str, bool]:
    """checkout_commit of the tricks source this process's code was loaded from, read once per
    process (a study's worker keeps the code it started with, whatever the checkout does later)."""
    return checkout_commit(Path(__file__).resolve().parent.parent)


def checkout_commit(root: str | Path) -> tuple[str, bool]:
    """commit_info(root) when `root` is the top of its own git checkout; ("unknown", False)
    otherwise: an installed wheel, or a site-packages inside some other repository (whose
    commit says nothing about this code)."""
    root = Path(root).resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=root, text=True, capture_output=True
        )
    except OSError:
        return "unknown", False
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
        return "unknown", False
    return commit_info(root)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def machine_info() -> dict:
    """The machine a study ran on: CPU model, the vector unit torch's CPU kernels use (e.g. AVX2,
    AVX512: it decides the float results), cores, torch and Python versions, the GPU if any."""
    import torch  # lazy: the study report reads this module and needs no torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
    }


def machine_line(m: dict | None) -> str:
    """One line for a report: 'AMD EPYC (AVX2), 2 cores, torch 2.13.0' (+ the GPU)."""
    if not m:
        return "not recorded"
    line = f"{m.get('cpu', 'unknown')} ({m.get('cpu_capability', '?')})"
    line += f", {m.get('cores', '?')} cores, torch {m.get('torch', '?')}"
    return line + (f", GPU {m['gpu']}" if m.get("gpu") else "")
