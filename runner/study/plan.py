"""The study's plan: every arm's tune trials (the Sobol points of runner.study.space, the shared
keys at the same points for every arm) and confirmation runs, as RunRecords whose key is their
run dir. Deterministic from the study file: whoever plans gets the same plan, so a restarted
coordinator enqueues only what the ledger lacks.

Replicated tuning (issue 32): replicate r has its own scramble (`Study.rep_search_seed`), its
own tune and confirmation seeds (its share of each list) and, with `vary_data`, its own split;
within a replicate every arm shares them all (arms paired by replicate). Its runs live under
runs/W/ARM/rep-R/; a one-replicate study keeps the paths it always had."""

from __future__ import annotations

from runner.study.records import ArmPlan, RunRecord
from runner.study.space import trial_points
from runner.study.spec import Study, merge, run_overrides


def arm_plans(study: Study) -> dict[str, ArmPlan]:
    return {a: ArmPlan(a, tuple(o)) for a, o in study.arms.items()}


def points_for(study: Study, arms: dict, rep: int = 0) -> dict[str, list[dict]]:
    own = {a: study.space(a)[len(study.search) :] for a in arms}
    return trial_points(study.search, own, study.budget, study.rep_search_seed(rep))


def run_ovr(
    study: Study, w: str, arm: str, plan: ArmPlan, params: dict, seed: int, rep: int = 0
) -> list:
    # `arm` in every run's config: `tricks compare DIR/runs/main --baseline arm=none` groups
    # the runs by arm even where two arms share a config
    return merge(
        run_overrides(study, w, plan["overrides"], params, seed, rep),
        plan["forced"],
        [f"+arm={arm}"],
    )


def arm_dir(study: Study, w: str, a: str, rep: int = 0) -> str:
    return f"runs/{w}/{a}" + (f"/rep-{rep}" if study.replicates > 1 else "")


def tune_jobs(
    study: Study, w: str, arms: dict, points: dict, rep: int = 0
) -> tuple[dict, list[RunRecord]]:
    """arm -> its trial records (params, run dirs), and the runs, trial-major so every arm
    advances together (a partial study is balanced, the progress view's best-so-far fills)."""
    trials, jobs = {a: [] for a in arms}, []
    seeds = study.rep_tune_seeds(rep)
    for i in range(study.budget):
        for a, plan in arms.items():
            dirs = [f"{arm_dir(study, w, a, rep)}/trial-{i:02d}-seed-{s}" for s in seeds]
            trials[a].append(
                {"index": i, "params": points[a][i], "run_dir": dirs[0], "run_dirs": dirs}
            )
            jobs += [
                RunRecord(
                    key=d,
                    workload=w,
                    arm=a,
                    phase="tune",
                    overrides=tuple(run_ovr(study, w, a, plan, points[a][i], s, rep)),
                    seed=s,
                    params=points[a][i],
                    trial=i,
                    replicate=rep,
                    label=f"{w}/{a}",
                )
                for s, d in zip(seeds, dirs)
            ]
    return trials, jobs


def confirm_dir(w: str, a: str, trial: int, seed: int, study: Study | None = None, rep=0) -> str:
    # the chosen trial is in the name: a different choice never meets another config's run
    base = arm_dir(study, w, a, rep) if study is not None else f"runs/{w}/{a}"
    return f"{base}/confirm-trial-{trial:02d}-seed-{seed}"


def confirm_jobs(
    study: Study, w: str, arms: dict, trials: dict, chosen: dict, rep: int = 0
) -> list[RunRecord]:
    return [
        RunRecord(
            key=confirm_dir(w, a, i, s, study, rep),
            workload=w,
            arm=a,
            phase="confirm",
            overrides=tuple(run_ovr(study, w, a, arms[a], trials[a][i]["params"], s, rep)),
            seed=s,
            params=trials[a][i]["params"],
            trial=i,
            replicate=rep,
            label=f"{w}/{a}",
        )
        for s in study.rep_seeds(rep)
        for a, i in chosen.items()
        if i is not None
    ]


def n_runs(study: Study, n_arms: int) -> int:
    return n_arms * (study.budget * len(study.tune_seeds) + len(study.seeds))
