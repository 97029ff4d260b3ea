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


class SweepProgress:
    """The view of many runs (a study): "label  done/total  failed k  elapsed  eta  note" as one
    rich line on a terminal; otherwise a plain line every ~10% of the runs (no control
    characters in logs). Minimal version (the UX branch has the full one)."""

    def __init__(self, total: int, label: str = "sweep", enabled="auto"):
        import time

        self.total, self.label, self.t0 = max(0, int(total)), label, time.time()
        self.enabled = sys.stderr.isatty() if enabled == "auto" else bool(enabled)
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.next_plain, self.done, self.failed, self.note = 0, 0, 0, ""
        self.live = None
        if self.enabled:
            from rich.live import Live
            from rich.text import Text

            self.live = Live(Text(self._line()), console=self.console, auto_refresh=False,
                             transient=False)
            self.live.start()

    def _line(self) -> str:
        import time

        el = time.time() - self.t0
        eta = (el / self.done * (self.total - self.done)) if self.done else None
        fmt = lambda s: f"{int(s) // 60}:{int(s) % 60:02d}"
        return (f"{self.label}  {self.done}/{self.total}  failed {self.failed}  {fmt(el)}  eta "
                f"{fmt(eta) if eta is not None else '-'}  {self.note}").rstrip()

    def update(self, done: int, failed: int = 0, note: str = "") -> None:
        self.done, self.failed, self.note = done, failed, note or self.note
        if self.live is not None:
            from rich.text import Text

            self.live.update(Text(self._line()), refresh=True)
        elif done >= self.next_plain or done >= self.total:
            step = max(1, self.total // 10)
            self.next_plain = (done // step + 1) * step
            print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
