"""Metric sinks. `metrics.jsonl` / `summary.json` are always written (the source of truth); the
`logger` group adds one more sink (wandb, tensorboard). A failing extra sink is switched off with
one warning and never stops training."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path


class Sink:
    def start(self, run_dir: Path, config: dict) -> None: ...
    def log(self, row: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep them visible as strings
    return v


class JsonlSink(Sink):
    """metrics.jsonl (one object per logged step) and summary.json, flushed every row."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.f = None

    def start(self, run_dir, config, rows=None):
        """Open metrics.jsonl; `rows` (on resume) replaces its content: the rows up to the
        checkpoint, so rows logged after it (and lost with the kill) are not duplicated."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if rows is not None:
            tmp = self.path.with_suffix(".jsonl.tmp")
            with open(tmp, "w") as f:
                for r in rows:
                    f.write(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n")
            os.replace(tmp, self.path)
            self.f = open(self.path, "a")  # noqa: SIM115 (open for the run)
        else:
            self.f = open(self.path, "w")  # noqa: SIM115 (open for the run)

    def log(self, row):
        self.f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self.f.flush()

    def finish(self, summary):
        if self.f:
            self.f.close()
            self.f = None
        write_json_atomic(self.run_dir / "summary.json", summary)


def write_json_atomic(path: Path, obj) -> None:
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as f:
        json.dump(
            {k: _clean(v) for k, v in obj.items()} if isinstance(obj, dict) else obj, f, indent=2
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Logger:
    """Fans rows out to the sinks; the jsonl sink is first and its errors are real errors."""

    def __init__(self, primary: JsonlSink, extra: list[Sink] = ()):
        self.primary, self.extra = primary, list(extra)

    def _each(self, method: str, *args):
        for s in list(self.extra):
            try:
                getattr(s, method)(*args)
            except Exception as e:  # a dashboard must never cost a run
                print(
                    f"warning: logger {type(s).__name__} failed in {method} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "it is off for the rest of the run, local files go on",
                    file=sys.stderr,
                )
                self.extra.remove(s)

    def start(self, run_dir, config, rows=None):
        self.primary.start(run_dir, config, rows)
        self._each("start", run_dir, config)

    def log(self, row):
        self.primary.log(row)
        self._each("log", row)

    def finish(self, summary):
        self.primary.finish(summary)
        self._each("finish", summary)
