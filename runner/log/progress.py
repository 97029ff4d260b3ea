"""The terminal view: a rich progress bar (step, loss, throughput, ETA) on a terminal, and plain
one-line evaluation reports otherwise (logs of sweeps and CI stay readable).

A sweep (Hydra multirun, or a study) adds one line for the whole sweep, `SweepProgress`: jobs
done / total, failed, elapsed, ETA and a note, drawn by the same rich display as the per-run bar
(one live display per terminal), so the run's bar sits right under the sweep's line. Off a
terminal it prints a plain line (no control characters) at most every ~10% of the jobs.
`SweepCallback` is the Hydra callback (conf/train.yaml's hydra.callbacks) that drives it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: the sweep display of this process, if one is live: a run's bar joins it
_ACTIVE: list[SweepProgress] = []


#: a line to print when the next run's training starts (after its input checks: bad input stays
#: one error line)
_PENDING: list[str] = []


def announce(line: str | None) -> None:
    """Say `line` when the next run starts training (None: nothing); replaces any earlier one."""
    _PENDING[:] = [line] if line else []


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Eta(ProgressColumn):
    """rich's own estimate, unless the task carries one (a sweep: time per finished job; rich's
    speed window is shorter than one job)."""

    def __init__(self):
        super().__init__()
        self.rich = TimeRemainingColumn()

    def render(self, task) -> Text:
        eta = task.fields.get("eta")
        return (
            Text(f"eta {eta}", style="progress.remaining")
            if eta is not None
            else Text("eta ") + self.rich.render(task)
        )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        _Eta(),
        console=console,
        transient=False,
    )


#: a CPU run predicted to take longer than this says so, with the override that shortens it
LONG_CPU_RUN = 30 * 60


class ProgressView:
    """One run's view. `plan`: the run's first line (its length; the model's defaults announced
    for it are appended). After the first evaluation one line gives the ETA. `shorten` (CPU runs:
    fraction -> the override that cuts the run to that fraction): a run predicted over
    LONG_CPU_RUN says so with the override that brings it under, timed on its first steps when
    the view is also an engine callback (`on_step_end`), else with the ETA."""

    def __init__(
        self,
        total: int,
        enabled="auto",
        start: int = 0,
        lines: int = 10,
        plan: str | None = None,
        shorten=None,
    ):
        self.console = Console(stderr=True)
        self.total, self.every, self.next_line = total, max(1, total // lines), 0
        if enabled == "auto":
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.progress, self.owned = None, False
        self.fields = {"loss": "-", "sps": "-", "val": ""}
        self.t0, self.start, self.shorten = time.monotonic(), start, shorten
        self.eta_said = self.long_said = self.checked = False
        self.t1 = self.t0
        first = " · ".join([*([plan] if plan else []), *_PENDING])
        if first:
            print(first, file=sys.stderr, flush=True)
        _PENDING.clear()
        if self.enabled:
            sweep = _ACTIVE[-1] if _ACTIVE and _ACTIVE[-1].progress else None
            if sweep is not None:  # one live display: the run's bar goes under the sweep line
                self.progress = sweep.progress
            else:
                self.progress, self.owned = _progress(self.console), True
            self.task = self.progress.add_task(
                "train", total=total, completed=start, info=self._info()
            )
            if self.owned:
                self.progress.start()

    def _info(self) -> str:
        f = self.fields
        return f"loss {f['loss']} {f['sps']} samples/s {f['val']}".rstrip()

    def _say(self, line: str) -> None:
        if self.progress is not None:  # above the live bar
            self.progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    #: steps timed for the early long-run check, after the first (its warm-up is atypical)
    TIMED_STEPS = 3

    def on_step_end(self, state) -> None:
        """Engine callback (with `shorten`): time the first steps, to warn of a long run before
        its first log step or evaluation, which may be many minutes away."""
        if self.checked or self.shorten is None:
            return
        done = state.step - self.start
        if done == 1:
            self.t1 = time.monotonic()
        elif done == 1 + self.TIMED_STEPS:
            now = time.monotonic()
            left = (now - self.t1) / self.TIMED_STEPS * (self.total - state.step)
            self.checked = True
            if now - self.t0 + left > LONG_CPU_RUN:
                self._say(self._long(now - self.t0 + left))

    def _long(self, whole: float) -> str:
        self.long_said = True
        cut = self.shorten(LONG_CPU_RUN / whole * 0.9)  # a 10% margin
        return (
            f"this CPU run is predicted to take {_hms(whole)} (over {LONG_CPU_RUN // 60} min); "
            f"{cut} brings it under, or run it on a GPU (trainer.device=cuda)"
        )

    def _forecast(self, step: int, row: dict) -> None:
        """The ETA line after the first evaluation (with the long-run warning if not said)."""
        if self.eta_said or step <= self.start or step >= self.total:
            return
        if not any(k.startswith("val/") for k in row):
            return
        self.eta_said = True
        spent = time.monotonic() - self.t0
        left = spent / (step - self.start) * (self.total - step)
        line = f"eta {_hms(left)} for the {self.total - step:,} steps left"
        if self.shorten is not None and not self.long_said and spent + left > LONG_CPU_RUN:
            line += " · " + self._long(spent + left)
        self._say(line)

    def update(self, step: int, row: dict):
        self._forecast(step, row)
        if not self.progress:
            return
        if "train/loss" in row:
            self.fields["loss"] = f"{row['train/loss']:.4f}"
        if "samples_per_sec" in row:
            self.fields["sps"] = f"{row['samples_per_sec']:,.0f}"
        if "val/acc" in row:
            self.fields["val"] = f"val/acc {row['val/acc']:.4f}"
        self.progress.update(self.task, completed=step, info=self._info())

    def eval_line(self, step: int, row: dict):
        if self.enabled or (step < self.next_line and step < self.total):
            return
        self.next_line = (step // self.every + 1) * self.every
        parts = [f"step {step}"] + [
            f"{k} {v:.4f}"
            for k, v in row.items()
            if k.startswith(("val/", "test/")) and isinstance(v, float)
        ]
        print("  ".join(parts), file=sys.stderr, flush=True)

    def close(self):
        if not self.progress:
            return
        if self.owned:
            self.progress.stop()
        else:  # the sweep's display stays; this run's bar goes (its result line is printed)
            self.progress.remove_task(self.task)
        self.progress = None


class SweepProgress:
    """The progress of a whole sweep: "label  done/total  failed k  elapsed  eta  note".

    On a terminal (enabled "auto" and stderr a TTY, or True) a rich line that runs' bars join;
    otherwise plain lines, without control characters, when done crosses each ~10% of total
    (and at the end)."""

    def __init__(self, total: int, label: str = "sweep", enabled="auto"):
        self.total, self.label = max(0, int(total)), label
        if enabled == "auto":
            enabled = sys.stderr.isatty()
        self.enabled = bool(enabled)
        self.t0 = time.monotonic()
        self.done = self.failed = self.skipped = 0
        self.note = ""
        self.step = max(1, math.ceil(self.total / 10)) if self.total else 1
        self.next_line = self.step
        self.progress = None
        if self.enabled:
            self.progress = _progress(Console(stderr=True))
            self.task = self.progress.add_task(label, total=self.total or None, info="", eta="-")
            self.progress.start()
        _ACTIVE.append(self)

    def eta(self) -> str:
        """The time left at the pace of the jobs run here: jobs found done already (`skipped`,
        a resumed study's) took no time and would make the rest look instant."""
        ran = self.done - self.skipped
        if ran <= 0 or not self.total:
            return "-"
        el = time.monotonic() - self.t0
        return _hms(el / ran * max(0, self.total - self.done))

    def _info(self) -> str:
        parts = [f"failed {self.failed}"]
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)

    def line(self) -> str:
        """The plain form: label  done/total  failed k  elapsed h:mm:ss  eta h:mm:ss  note."""
        el = _hms(time.monotonic() - self.t0)
        s = (
            f"{self.label}  {self.done}/{self.total}  failed {self.failed}  elapsed {el}  "
            f"eta {self.eta()}"
        )
        return f"{s}  {self.note}" if self.note else s

    def update(
        self, done: int, failed: int = 0, note: str = "", skipped: int | None = None
    ) -> None:
        """`done` jobs of which `failed`; `skipped`: of the done, those found done already."""
        self.done, self.failed, self.note = int(done), int(failed), note or self.note
        if skipped is not None:
            self.skipped = int(skipped)
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, info=self._info(), eta=self.eta())
        elif self.done >= self.next_line or (self.total and self.done >= self.total):
            while self.next_line <= self.done:
                self.next_line += self.step
            print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def sweep_total(config) -> int | None:
    """The number of jobs of the sweep `config` describes: Optuna's n_trials, or the product of
    the basic sweeper's value lists (hydra.overrides.task and hydra.sweeper.params)."""
    hs = config.hydra.sweeper
    if "n_trials" in hs:
        return int(hs.n_trials)
    try:
        # in the try: Hydra's private module may move (then no total)
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = hs.get("params") or {}
        overrides = list(config.hydra.overrides.task) + [f"{k}={v}" for k, v in params.items()]
        parsed = OverridesParser.create().parse_overrides(overrides)
        return sum(len(b) for b in BasicSweeper.split_arguments(parsed, None))
    except Exception:
        return None


from hydra.experimental.callback import Callback  # noqa: E402 (the callback's base only)


def _finished_jobs(sweep_dir) -> tuple[int, int]:
    """(jobs with a summary.json, of which not completed) under a sweep directory."""

    done = failed = 0
    for f in Path(str(sweep_dir)).glob("*/summary.json"):
        done += 1
        try:
            failed += json.loads(f.read_text()).get("status") != "completed"
        except (OSError, ValueError, AttributeError):
            failed += 1
    return done, failed


class SweepCallback(Callback):
    """Hydra callback: a SweepProgress over the multirun's jobs. The basic launcher runs the jobs
    in the process that started the multirun, so every job end moves the line. A launcher that
    runs them in other processes (joblib, submitit) gets pickled copies that stay silent there;
    the sweep then says so in one plain line at the start and, at the end, counts the jobs'
    summary.json files (done, failed)."""

    def __init__(self, enabled="auto"):
        self.enabled = enabled
        self.view, self.pid = None, None
        self.done = self.failed = 0
        self.best = None
        self.remote = None

    def __getstate__(self):  # launchers pickle the callbacks into their workers
        return {
            "enabled": self.enabled,
            "view": None,
            "pid": self.pid,
            "done": 0,
            "failed": 0,
            "best": None,
            "remote": self.remote,
        }

    def on_multirun_start(self, config, **kwargs) -> None:
        total = sweep_total(config)
        from runner.stack import STACK  # --stack: the jobs are listed now, trained after

        if not total or STACK["size"] > 1:
            return
        self.pid = os.getpid()

        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
        if launcher and not launcher.endswith("BasicLauncher"):
            self.remote = (launcher.rsplit(".", 1)[-1], total, time.monotonic())
            print(
                f"sweep  {total} jobs  ({self.remote[0]} runs them in other processes: "
                f"counted when they have all returned)",
                file=sys.stderr,
                flush=True,
            )
            return
        enabled = self.enabled
        p = config.get("trainer", {}).get("progress", "auto")
        if enabled == "auto" and p is False:
            enabled = False
        self.view = SweepProgress(total, "sweep", enabled=enabled)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if self.view is None or os.getpid() != self.pid:
            return

        self.done += 1
        v = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if not isinstance(v, (int, float)) or v != v:
            self.failed += 1
        elif self.best is None or v > self.best[0]:
            self.best = (float(v), config.hydra.job.num)
        note = f"best val/acc {self.best[0]:.4f} (job {self.best[1]})" if self.best else ""
        self.view.update(self.done, self.failed, note)

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.remote is not None and os.getpid() == self.pid:
            name, total, t0 = self.remote
            done, failed = _finished_jobs(config.hydra.sweep.dir)
            print(
                f"sweep  {done}/{total}  failed {failed}  elapsed {_hms(time.monotonic() - t0)}",
                file=sys.stderr,
                flush=True,
            )
            self.remote = None
