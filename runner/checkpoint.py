"""Checkpoints: written atomically (temp file, fsync, rename), read with weights_only=True.

`last.pt` holds everything needed to resume exactly: model, optimizer, scheduler, scaler, every
trick's state, RNG states, data position, step, metric rows and accumulators. `best.pt` holds the
weights evaluated at the best validation accuracy (EMA weights when EMA is on).
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import torch

from runner.config import first_difference
from runner.engine import rng_state, set_rng_state
from runner.errors import ConfigError

FORMAT = 1


_saves = 0


def save_atomic(obj, path: Path) -> None:
    """Write `path` so that a kill at any moment leaves either the old or the new file whole:
    write a temp file next to it, fsync, rename over it, fsync the directory."""
    global _saves
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _saves += path.name == "last.pt"
    kill = os.environ.get("TRICKS_TEST_KILL_IN_SAVE")  # tests only: SIGKILL mid-write of the
    with open(tmp, "wb") as f:  # N-th last.pt of this process
        if kill and int(kill) == _saves and path.name == "last.pt":
            buf = io.BytesIO()
            torch.save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        if stale != tmp:
            try:
                stale.unlink()
            except OSError:
                pass


HOW = "resume=true with hydra.run.dir=<an existing run dir>, or resume=<path to a last.pt>"


def load(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint; any problem is one ConfigError line (the file is never modified)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("resume", f"no checkpoint at {path}", HOW)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        detail = " ".join(str(e).split())[:120]
        raise ConfigError(
            "resume",
            f"checkpoint {path} is corrupt or unreadable "
            f"({type(e).__name__}: {detail}); delete it to start over, or resume "
            "from another checkpoint",
        )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "rows" not in ckpt:
        raise ConfigError(
            "resume",
            f"{path} is not a tricks last.pt checkpoint (format {FORMAT}, with the training state)",
        )
    return ckpt


def state_to_ckpt(state, config: dict) -> dict:
    state.count_hits()  # pending train/acc counts go into "acc" (integers: exact on resume)
    return {
        "format": FORMAT,
        "config": config,
        "model": state.raw_model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "tricks": {f"{i}:{t.name}": t.state_dict() for i, t in enumerate(state.tricks)},
        "rng": rng_state(),
        "step": state.step,
        "epoch": state.epoch,
        "micro_pos": state.micro_pos,
        "rows": state.rows,
        "best": state.best,
        "acc": {k: [v[0], v[1]] for k, v in state._acc.items()},
        "train_seconds": state.train_seconds,
        "samples_seen": state.samples_seen,
        "nan_skips": state.nan_skips,
    }


# Config keys that may differ between the run that wrote a checkpoint and the one resuming it.
RESUMABLE_DIFFS = (
    "resume",
    "trainer.progress",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.checkpoint_every",
    "trainer.log_every",
    "logger",
    "trainer.device",
    "trainer.keep_checkpoints",
    "trainer.data_on_device",
    "model.train_with",
)  # advice; what it set is compared as optimizer.lr etc.


def prune(ckpt_dir: Path, keep: str) -> None:
    """After a completed run (summary.json written): keep `all` checkpoints, only `best`
    (best.pt), or `none`. A failed or interrupted run keeps everything (resume needs last.pt)."""
    drop = {"all": (), "best": ("last.pt",), "none": ("last.pt", "best.pt")}[keep]
    for name in drop:
        (ckpt_dir / name).unlink(missing_ok=True)
    if keep == "none" and ckpt_dir.is_dir() and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()


def check_compatible(ckpt_config: dict, config: dict) -> None:
    diff = first_difference(ckpt_config, config, RESUMABLE_DIFFS)
    if diff is not None:
        key, was, now = diff
        raise ConfigError(
            "resume",
            f"checkpoint was written with {key}={was!r}, "
            f"this run has {key}={now!r}; only "
            f"{', '.join(RESUMABLE_DIFFS[1:])} may change on resume",
        )


def restore(state, ckpt: dict) -> None:
    """Put the checkpointed training state into `state` (built from the same config)."""
    try:
        state.raw_model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        if state.scaler is not None and ckpt.get("scaler"):
            state.scaler.load_state_dict(ckpt["scaler"])
        saved = ckpt.get("tricks", {})
        for i, t in enumerate(state.tricks):
            key = f"{i}:{t.name}"
            if key not in saved:
                raise ConfigError("resume", f"checkpoint has no state for trick {t.name}")
            t.load_state_dict(saved[key])
    except ConfigError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ConfigError(
            "resume",
            f"checkpoint does not fit this model/optimizer/tricks "
            f"({type(e).__name__}: {' '.join(str(e).split())[:160]})",
        )
    state.step, state.epoch, state.micro_pos = ckpt["step"], ckpt["epoch"], ckpt["micro_pos"]
    state.rows, state.best = list(ckpt["rows"]), dict(ckpt["best"])
    state._acc = {k: [v[0].to(state.plan.device), v[1]] for k, v in ckpt["acc"].items()}
    state.train_seconds = ckpt["train_seconds"]
    state.samples_seen = ckpt["samples_seen"]
    state.nan_skips = ckpt.get("nan_skips", 0)
    set_rng_state(ckpt["rng"])
