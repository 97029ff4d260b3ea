"""The terminal view: a rich progress bar (step, loss, throughput, ETA) on a terminal, and plain
one-line evaluation reports otherwise (logs of sweeps and CI stay readable)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class ProgressView:
    def __init__(self, total: int, enabled="auto", start: int = 0, lines: int = 10):
        self.console = Console(stderr=True)
        self.total, self.every, self.next_line = total, max(1, total // lines), 0
        if enabled == "auto":
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.progress = None
        if self.enabled:
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[sps]} samples/s"),
                TextColumn("{task.fields[val]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=self.console, transient=False)
            self.task = self.progress.add_task("train", total=total, completed=start, loss="-",
                                               sps="-", val="")
            self.progress.start()

    def update(self, step: int, row: dict):
        if not self.progress:
            return
        fields = {}
        if "train/loss" in row:
            fields["loss"] = f"{row['train/loss']:.4f}"
        if "samples_per_sec" in row:
            fields["sps"] = f"{row['samples_per_sec']:,.0f}"
        if "val/acc" in row:
            fields["val"] = f"val/acc {row['val/acc']:.4f}"
        self.progress.update(self.task, completed=step, **fields)

    def eval_line(self, step: int, row: dict):
        if self.enabled or (step < self.next_line and step < self.total):
            return
        self.next_line = (step // self.every + 1) * self.every
        parts = [f"step {step}"] + [f"{k} {v:.4f}" for k, v in row.items()
                                     if k.startswith(("val/", "test/")) and isinstance(v, float)]
        print("  ".join(parts), file=sys.stderr, flush=True)

    def close(self):
        if self.progress:
            self.progress.stop()
