"""Equal compute: each arm's cost per step measured in ONE worker process with the arms
interleaved (round-robin), so a load change on a shared machine hits every arm alike; an arm
costing more than 1.1x the baseline gets a baseline arm `<baseline>@<arm>` trained for its
measured ratio times the steps, tuned under the same budget.

A warm-up run of the baseline (uncounted: it pays the process's one-off costs) also sets the
length of the rounds: each round runs at least `cost_steps` steps and at least `cost_seconds` of
the baseline's training, so a 1 ms step is timed over seconds, not over a tenth of a second that
one stray process can double. An arm's cost is the minimum over its REPS rounds: a load on the
machine only ever adds time (the rule of Python's timeit), and a round hit by one is not the
arm's cost; the rounds are kept in study.json beside it."""

from __future__ import annotations

import math
from pathlib import Path

from runner.config import compose
from runner.study.records import LOCAL_PIN, RunRecord
from runner.study.results import run_sec_per_step
from runner.study.spec import Study, merge, run_overrides

REPS = 5
THRESHOLD = 1.1


def arm_dir(w: str, a: str) -> Path:
    """Where arm `a`'s timing runs of workload `w` live, relative to the study dir (rep-R in it;
    the workload of a study file without `workloads:` is "main")."""
    return Path("runs") / "_cost" / w / a


def _short(n: int) -> list[str]:
    return [
        f"trainer.max_steps={n}",
        f"trainer.eval_every={n}",
        f"trainer.log_every={max(1, n // 5)}",
        f"trainer.checkpoint_every={n}",
        "trainer.keep_checkpoints=none",
    ]


def _job(study: Study, w: str, arms: dict, points: dict, a: str, n: int, seed: int, rep: str):
    ovr = merge(run_overrides(study, w, arms[a], points[a][0], seed), _short(n), [f"+arm={a}"])
    return RunRecord(
        key=str(arm_dir(w, a) / f"rep-{rep}"),
        workload=w,
        arm=a,
        phase="cost",
        overrides=tuple(ovr),
        seed=seed,
        params=points[a][0],
        label="warmup" if rep == "warmup" else f"{w}/{a}",
        pin=LOCAL_PIN,  # one process runs them all, in order: a load hits every arm alike
    )


def warmup_job(study: Study, w: str, arms: dict, points: dict) -> RunRecord:
    """The first, uncounted run: the baseline for `cost_steps` steps (it warms the process up:
    allocator, caches, lazy imports; the first timed arm would otherwise pay for them)."""
    return _job(study, w, arms, points, study.baseline, study.cost_steps, 0, "warmup")


def round_steps(study: Study, warm_sec_per_step: float | None) -> int:
    """Steps per timing round: at least cost_steps, and enough for cost_seconds of the
    baseline's training at the warm-up's pace."""
    n = study.cost_steps
    if warm_sec_per_step and warm_sec_per_step > 0:
        n = max(n, math.ceil(study.cost_seconds / warm_sec_per_step))
    return n


def round_jobs(study: Study, w: str, arms: dict, points: dict, n: int) -> list[RunRecord]:
    """REPS rounds of every arm, interleaved (round r of every arm before round r + 1)."""
    return [_job(study, w, arms, points, a, n, rep, str(rep)) for rep in range(REPS) for a in arms]


def ratios(per_arm: dict[str, list[float]], baseline: str, steps: int) -> dict[str, dict]:
    """arm -> {sec_per_step (the minimum over its rounds), ratio to the baseline's, rounds,
    round_steps, source, ratio_range}. `ratio_range`: the least and greatest ratio of one round
    to the baseline's round of the same index (they ran side by side), the timing's own spread:
    a short run on a shared CPU can read 1.39x and then 0.92x for the same trick."""
    best = {a: (min(v) if v else None) for a, v in per_arm.items()}
    base = best.get(baseline)
    return {
        a: {
            "sec_per_step": s,
            "ratio": (s / base) if s and base else None,
            "rounds": per_arm[a],
            "round_steps": steps,
            "source": "interleaved",
            "ratio_range": round_ratio_range(per_arm[a], per_arm.get(baseline) or []),
        }
        for a, s in best.items()
    }


def round_ratio_range(rounds: list[float], base_rounds: list[float]) -> list[float] | None:
    """[min, max] of the per-round ratios, paired by round; None without two paired rounds."""
    r = [x / b for x, b in zip(rounds, base_rounds) if x and b]
    return [min(r), max(r)] if len(r) >= 2 and len(rounds) == len(base_rounds) else None


def round_secs(study_dir: Path, jobs: list[RunRecord], arm_label: str) -> list[float]:
    """Seconds per step of each completed round of one arm."""
    xs = [run_sec_per_step(study_dir / j.run_dir) for j in jobs if j.label == arm_label]
    return [x for x in xs if x is not None]


def scaled_length(
    study: Study, w: str, base_overrides: list[str], ratio: float, steps_per_epoch=None
) -> list[str]:
    """The baseline's training length times `ratio`, in optimizer steps. A baseline set in
    epochs is converted with `steps_per_epoch` (the warm-up run's, from its summary.json): whole
    epochs would round 6 x 1.14 to 7 (1.17x) and 2 x 1.2 to 2 (no extra compute at all). Without
    it (a warm-up run from before summary.json recorded it) the epochs are rounded, as then."""
    cfg = compose(run_overrides(study, w, base_overrides, {}, study.tune_seeds[0]))
    if cfg.trainer.max_steps is not None:
        return [f"trainer.max_steps={max(1, round(cfg.trainer.max_steps * ratio))}"]
    if steps_per_epoch:
        return [f"trainer.max_steps={max(1, round(cfg.trainer.epochs * steps_per_epoch * ratio))}"]
    return [f"trainer.epochs={max(1, round(cfg.trainer.epochs * ratio))}"]
