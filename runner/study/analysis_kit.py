"""What the recipes' own analyses (experiments/<recipe>/analysis.py, the study file's `analysis:`)
share: reading study.json's workloads and run dirs, the seed statistics, the figure look.

study.json's layout is runner.study's (runner/study/__init__.py); these read it as
runner.study.report does, so a recipe's analysis and the generic report cannot disagree on it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

from runner.runs import load_run_dir
from runner.stats import describe, mean_ci
from runner.study.cost import arm_dir as cost_dir
from runner.study.report import finish_axes, pyplot, run_path, save_figure
from runner.study.report import workloads as _workloads
from runner.study.results import num, rows_of, run_sec_per_step, summary_of

__all__ = [
    "cost_dir",
    "finish_axes",
    "fmt",
    "last",
    "load_runs",
    "mean_ci",
    "num",
    "pyplot",
    "rows_of",
    "run_path",
    "run_sec_per_step",
    "save_figure",
    "sd",
    "sibling_analysis",
    "summary_of",
    "workloads",
]


def workloads(study: dict) -> dict:
    """workload name -> {arm: arm record}, as the report reads them (`by_workload`, or
    `workloads`), with None naming the one workload of a one-workload study (no heading)."""
    return _workloads(study, single=None)


def load_runs(study_dir: Path, dirs: list[str]) -> list:
    """The run dirs that exist, read as runner.compare reads them (rows, summary, status)."""
    return [load_run_dir(run_path(study_dir, d)) for d in dirs if run_path(study_dir, d).is_dir()]


def last(rows: list[dict], key: str):
    """The last logged number of `key` (None if never logged)."""
    for r in reversed(rows):
        if isinstance(r.get(key), (int, float)):
            return r[key]
    return None


def sd(xs: list[float]) -> float:
    """The sample standard deviation (n - 1); NaN below two values (runner.stats.describe's)."""
    return describe(list(xs))["std"]


def fmt(m, h, digits: int = 4) -> str:
    """`m ± h` (mean_ci's pair), `m` alone without an interval, n/a without a mean."""
    if m is None:
        return "n/a"
    return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


def sibling_analysis(here: str, recipe: str) -> ModuleType:
    """experiments/<recipe>/analysis.py, found next to the recipe whose analysis is `here`, as a
    module: a recipe that reports as another does (the tweets variants) runs that file, so the
    two reports cannot drift apart."""
    path = Path(here).resolve().parent.parent / recipe / "analysis.py"
    spec = importlib.util.spec_from_file_location(f"{recipe}_analysis", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
