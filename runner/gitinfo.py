"""Which commit a result came from, and whether the files its numbers depend on were edited."""

from __future__ import annotations

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
