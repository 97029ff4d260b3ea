"""The study's plan: every arm's tune trials (the Sobol points of runner.study.space, the shared
keys at the same points for every arm) and confirmation runs, as RunRecords whose key is their
run dir. Deterministic from the study file: whoever plans gets the same plan, so a restarted
coordinator enqueues only what the ledger lacks."""

from __future__ import annotations

from runner.study.records import ArmPlan, RunRecord
from runner.study.space import trial_points
from runner.study.spec import Study, merge, run_overrides


def arm_plans(study: Study) -> dict[str, ArmPlan]:
    return {a: ArmPlan(a, tuple(o)) for a, o in study.arms.items()}


def points_for(study: Study, arms: dict) -> dict[str, list[dict]]:
    own = {a: study.space(a)[len(study.search) :] for a in arms}
    return trial_points(study.search, own, study.budget, study.search_seed)


def run_ovr(study: Study, w: str, arm: str, plan: ArmPlan, params: dict, seed: int) -> list:
    # `arm` in every run's config: `tricks compare DIR/runs/main --baseline arm=none` groups
    # the runs by arm even where two arms share a config
    return merge(
        run_overrides(study, w, plan["overrides"], params, seed), plan["forced"], [f"+arm={arm}"]
    )


def tune_jobs(study: Study, w: str, arms: dict, points: dict) -> tuple[dict, list[RunRecord]]:
    """arm -> its trial records (params, run dirs), and the runs, trial-major so every arm
    advances together (a partial study is balanced, the progress view's best-so-far fills)."""
    trials, jobs = {a: [] for a in arms}, []
    for i in range(study.budget):
        for a, plan in arms.items():
            dirs = [f"runs/{w}/{a}/trial-{i:02d}-seed-{s}" for s in study.tune_seeds]
            trials[a].append(
                {"index": i, "params": points[a][i], "run_dir": dirs[0], "run_dirs": dirs}
            )
            jobs += [
                RunRecord(
                    key=d,
                    workload=w,
                    arm=a,
                    phase="tune",
                    overrides=tuple(run_ovr(study, w, a, plan, points[a][i], s)),
                    seed=s,
                    params=points[a][i],
                    trial=i,
                    label=f"{w}/{a}",
                )
                for s, d in zip(study.tune_seeds, dirs)
            ]
    return trials, jobs


def confirm_dir(w: str, a: str, trial: int, seed: int) -> str:
    # the chosen trial is in the name: a different choice never meets another config's run
    return f"runs/{w}/{a}/confirm-trial-{trial:02d}-seed-{seed}"


def confirm_jobs(study: Study, w: str, arms: dict, trials: dict, chosen: dict) -> list[RunRecord]:
    return [
        RunRecord(
            key=confirm_dir(w, a, i, s),
            workload=w,
            arm=a,
            phase="confirm",
            overrides=tuple(run_ovr(study, w, a, arms[a], trials[a][i]["params"], s)),
            seed=s,
            params=trials[a][i]["params"],
            trial=i,
            label=f"{w}/{a}",
        )
        for s in study.seeds
        for a, i in chosen.items()
        if i is not None
    ]


def n_runs(study: Study, n_arms: int) -> int:
    return n_arms * (study.budget * len(study.tune_seeds) + len(study.seeds))
