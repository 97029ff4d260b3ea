"""From run dirs to study.json: trial scores, selection, confirmation figures, verdicts."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from runner.runs import read_rows
from runner.stats import compare_to, describe, holm_verdicts
from runner.stats import finite as num


def summary_of(run_dir: Path) -> dict:
    try:
        s = json.loads((Path(run_dir) / "summary.json").read_text())
        return s if isinstance(s, dict) else {}
    except (OSError, ValueError):
        return {}


def rows_of(run_dir: Path) -> list[dict]:
    """A run dir's metrics.jsonl rows (runner.runs.read_rows)."""
    return read_rows(Path(run_dir) / "metrics.jsonl")


def run_value(run_dir: Path, key: str) -> float | None:
    """A completed run's figure `key`: summary.json's `key`, else its `best/key` (val/acc ->
    best/val/acc, the checkpoint test/acc is read at), else the last logged value. None for a run
    that did not complete or never logged it."""
    s = summary_of(run_dir)
    if s.get("status") != "completed":
        return None
    for k in (key, f"best/{key}"):
        if num(s.get(k)):
            return float(s[k])
    last = [r[key] for r in rows_of(run_dir) if num(r.get(key))]
    return float(last[-1]) if last else None


def error_of(run_dir: Path) -> str:
    s = summary_of(run_dir)
    return str(s.get("error") or s.get("status") or "no summary.json (never ran)")


def score_trials(study_dir: Path, trials: list[dict], key: str) -> None:
    """Each trial's `select_value`: the mean of `key` over its tune seeds; a failed tune run
    makes the trial failed (None: worst)."""
    for t in trials:
        vals = [run_value(study_dir / d, key) for d in t["run_dirs"]]
        ok = all(v is not None for v in vals)
        t["status"] = "completed" if ok else "failed"
        t["select_value"] = sum(vals) / len(vals) if ok else None
        t["errors"] = [
            f"{d}: {error_of(study_dir / d)}" for d, v in zip(t["run_dirs"], vals) if v is None
        ]


def choose(trials: list[dict], higher: bool) -> int | None:
    """The best trial by select_value (failed = worst; a tie goes to the earlier trial)."""
    ok = [t for t in trials if t["select_value"] is not None]
    if not ok:
        return None
    sign = 1 if higher else -1
    return max(ok, key=lambda t: (sign * t["select_value"], -t["index"]))["index"]


def final_figures(
    study_dir: Path, run_dirs: list[str], seeds: list[int], key: str, higher: bool
) -> dict:
    vals = [run_value(study_dir / d, key) for d in run_dirs]
    got = [(v, s) for v, s in zip(vals, seeds) if v is not None]
    d = describe([v for v, _ in got], higher) if got else {"n": 0, "mean": None}
    lo, hi = d.get("ci_low"), d.get("ci_high")
    return {
        "n": len(got),
        "mean": d["mean"],
        "ci95": [lo, hi],
        "values": [v for v, _ in got],
        "seeds": [s for _, s in got],
        "failed": len(run_dirs) - len(got),
        "run_dirs": list(run_dirs),
        "failed_runs": [
            {"run_dir": r, "error": error_of(study_dir / r)}
            for r, v in zip(run_dirs, vals)
            if v is None
        ],
    }


def _diff(c: dict) -> dict:
    return {
        "mean": c["diff"],
        "ci95": [c["diff_low"], c["diff_high"]],
        "p": c["p"],
        "p_holm": c.get("p_holm"),
        "test": c["test"],
        "mde": c["mde"],
        "se": c["se"],
        "df": c["df"],
    }


def verdicts(arms: dict, pairs: list[tuple[str, str]], higher: bool) -> list[tuple[str, dict]]:
    """compare_to for each (arm, base) pair, Holm-adjusted across the pairs (one family) and
    decided on the adjusted p. Returns [(arm, {"diff": ..., "verdict": ...})]."""
    done, res = [], []
    for arm, base in pairs:
        a, b = arms[arm]["final"], arms[base]["final"]
        res.append(compare_to(a["values"], a["seeds"], b["values"], b["seeds"], higher))
        done.append(arm)
    holm_verdicts(res, higher)
    return [(arm, {"diff": _diff(c), "verdict": c["verdict"]}) for arm, c in zip(done, res)]


def run_sec_per_step(run_dir: Path) -> float | None:
    """A run's training seconds per optimizer step, evaluation excluded (None unless completed)."""
    return sec_per_step_of(summary_of(run_dir))


def sec_per_step_of(s: dict) -> float | None:
    """run_sec_per_step from a summary already read."""
    if s.get("status") == "completed" and num(s.get("train_seconds")) and s.get("steps"):
        return s["train_seconds"] / s["steps"]
    return None


def sec_per_step(study_dir: Path, run_dirs: list[str]) -> float | None:
    """Median training seconds per optimizer step (evaluation excluded) over completed runs."""
    xs = [x for d in run_dirs if (x := run_sec_per_step(study_dir / d)) is not None]
    return statistics.median(xs) if xs else None


def time_to_target(study_dir: Path, run_dirs: list[str], target: dict, higher: bool) -> dict:
    """Per confirmation run: the first logged step where target's metric reaches its value, and
    that step times the run's seconds per step; None where it never does."""
    steps, secs = [], []
    for d in run_dirs:
        hit = next(
            (
                r["step"]
                for r in rows_of(study_dir / d)
                if num(r.get(target["key"]))
                and (
                    r[target["key"]] >= target["value"]
                    if higher
                    else r[target["key"]] <= target["value"]
                )
            ),
            None,
        )
        sps = run_sec_per_step(study_dir / d)
        steps.append(hit)
        secs.append(hit * sps if hit is not None and sps is not None else None)
    reached = [s for s in steps if s is not None]
    rs = [s for s in secs if s is not None]
    return {
        **target,
        "steps": steps,
        "seconds": secs,
        "reached": len(reached),
        "n": len(steps),
        "mean_steps": sum(reached) / len(reached) if reached else None,
        "mean_seconds": sum(rs) / len(rs) if rs else None,
    }


def clean(x):
    """NaN/inf -> None: study.json stays valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x
