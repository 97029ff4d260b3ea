"""A study dir's inputs: the lock (one coordinator per DIR) and the pinned study file and
OVERRIDES (a re-run must bring the same ones; READING_KEYS may change)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from runner import ROOT
from runner.errors import ConfigError
from runner.gitinfo import checkout_commit, machine_info
from runner.study.spec import Study

# -- DIR: the lock and the pinned inputs -------------------------------------------------------


def lock(out: Path) -> Path:
    """Claim DIR for this process; a second study on DIR refuses (a dead holder is replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    f = out / ".study.lock"
    for _ in range(2):
        try:
            fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return f
        except FileExistsError:
            try:
                pid = int(f.read_text().strip() or 0)
                os.kill(pid, 0)
                alive = pid != os.getpid()
            except (OSError, ValueError):
                alive = False
            if alive:
                raise ConfigError(
                    "--out",
                    f"{out} is in use by another tricks study (pid {pid})",
                    "wait for it to finish, or another --out",
                )
            f.unlink(missing_ok=True)
    raise ConfigError("--out", f"cannot lock {out}")


# Keys that only read finished runs (no run depends on them): a resumed study may add or change
# them, and recomputes them from DIR's runs.
READING_KEYS = ("compare", "analysis", "controls")


def same_study_text(old: str, new: str) -> bool:
    """Whether two study files make the same runs: equal YAML content but for READING_KEYS. A
    comment or the layout may change between the pieces of a study (a corrected note, a measured
    time), and so may the arm-against-arm pairs or the analysis file; any other key not."""
    if old == new:
        return True
    try:
        a, b = yaml.safe_load(old), yaml.safe_load(new)
    except yaml.YAMLError:
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    return {k: v for k, v in a.items() if k not in READING_KEYS} == {
        k: v for k, v in b.items() if k not in READING_KEYS
    }


def pin(study: Study, out: Path, names: list[str] | None = None) -> None:
    """Save the study file and OVERRIDES in DIR; a re-run must bring the same ones."""
    inputs = {"study_file": str(study.path), "overrides": study.overrides}
    saved, meta = out / "study.yaml", out / "study_input.json"
    if saved.is_file():
        if not same_study_text(saved.read_text(), study.text):
            was = json.loads(meta.read_text()).get("study_file") if meta.is_file() else saved
            raise ConfigError(
                "--out",
                f"{out} holds a study of another study file ({was})",
                "the same study file, or another --out",
            )
        inputs = json.loads(meta.read_text()) if meta.is_file() else inputs
        old = inputs.get("overrides", [])
        if old != study.overrides:
            raise ConfigError(
                "OVERRIDES",
                f"{out} was run with {' '.join(old) or 'none'}",
                "the same overrides, or another --out",
            )

    sha, dirty = checkout_commit(ROOT)  # a resumed study may span commits: each start is recorded
    inv = {
        "commit": sha,
        "dirty": dirty,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),  # a resumed study may span machines too
    }
    if names is not None and names != list(study.workloads):
        inv["workloads"] = names
    inputs.setdefault("invocations", []).append(inv)
    saved.write_text(study.text)
    meta.write_text(json.dumps(inputs, indent=2) + "\n")
