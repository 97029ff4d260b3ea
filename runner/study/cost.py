"""Equal compute: each arm's cost per step measured in ONE worker process with the arms
interleaved (round-robin), so a load change on a shared machine hits every arm alike; an arm
costing more than 1.1x the baseline gets a baseline arm `<baseline>@<arm>` trained for its
measured ratio times the steps, tuned under the same budget."""

from __future__ import annotations

from pathlib import Path

from runner.study.pool import Job
from runner.study.spec import Study, merge, run_overrides

REPS = 3
THRESHOLD = 1.1


def arm_dir(w: str, a: str) -> Path:
    """Where arm `a`'s timing runs of workload `w` live, relative to the study dir (rep-R in it;
    the workload of a study file without `workloads:` is "main")."""
    return Path("runs") / "_cost" / w / a


def cost_jobs(study: Study, w: str, arms: dict, points: dict) -> list[Job]:
    n = study.cost_steps
    short = [
        f"trainer.max_steps={n}",
        f"trainer.eval_every={n}",
        f"trainer.log_every={max(1, n // 5)}",
        f"trainer.checkpoint_every={n}",
        "trainer.keep_checkpoints=none",
    ]

    def job(a: str, seed: int, rep: str, label: str) -> Job:
        return Job(
            merge(run_overrides(study, w, arms[a], points[a][0], seed), short, [f"+arm={a}"]),
            arm_dir(w, a) / f"rep-{rep}",
            label,
        )

    # a first, uncounted run warms the process up (allocator, caches, lazy imports): the
    # first timed arm would otherwise pay for it
    return [job(next(iter(arms)), 0, "warmup", "warmup")] + [
        job(a, rep, str(rep), f"{w}/{a}") for rep in range(REPS) for a in arms
    ]


def ratios(per_arm: dict[str, float | None], baseline: str) -> dict[str, dict]:
    base = per_arm.get(baseline)
    return {
        a: {"sec_per_step": s, "ratio": (s / base) if s and base else None, "source": "interleaved"}
        for a, s in per_arm.items()
    }


def median_sec(study_dir: Path, jobs: list[Job], arm_label: str) -> float | None:
    from runner.study.results import sec_per_step

    return sec_per_step(study_dir, [str(j.run_dir) for j in jobs if j.label == arm_label])


def scaled_length(study: Study, w: str, base_overrides: list[str], ratio: float) -> list[str]:
    """The baseline's training length times `ratio` (max_steps when set, else epochs)."""
    from runner.config import compose

    cfg = compose(run_overrides(study, w, base_overrides, {}, study.tune_seeds[0]))
    if cfg.trainer.max_steps is not None:
        return [f"trainer.max_steps={max(1, round(cfg.trainer.max_steps * ratio))}"]
    return [f"trainer.epochs={max(1, round(cfg.trainer.epochs * ratio))}"]
