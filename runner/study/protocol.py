"""The study protocol: validate -> (measure cost) -> tune -> select -> confirm -> verdict.

`execute` coordinates: it pins DIR's inputs, opens the ledger (runner.study.ledger: an Optuna
storage, `sqlite:///DIR/study.db` by default), plans each phase (runner.study.plan) and enqueues
what the ledger lacks, runs `parallel` local workers (runner.study.worker; `tricks worker` adds
more from any machine), waits on the ledger while it re-queues dead workers' runs, advances the
phases, and exports study.json and the report (runner.study.export). Killed and restarted, it
rebuilds its state from the ledger: the plan is the same, completed runs stay completed."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from runner import EXPERIMENTS_DIR as EXPERIMENTS
from runner.config import compose
from runner.errors import ConfigError, check
from runner.overrides import precheck
from runner.runs import status_of
from runner.study import cost as costmod
from runner.study import results as R
from runner.study.export import (  # noqa: F401  (the names callers used from here)
    analysis,
    arm_record,
    assemble,
    each_workload,
    earlier_workloads,
    failed_runs,
    headline,
    make_report,
    missing_runs,
    report_only,
    versus,
    workload_arms,
    write,
)
from runner.study.inputs import READING_KEYS, ROOT, lock, pin, same_study_text  # noqa: F401
from runner.study.ledger import HEARTBEAT, Ledger, alive, default_url, study_name
from runner.study.plan import (  # noqa: F401
    arm_plans,
    confirm_dir,
    confirm_jobs,
    n_runs,
    points_for,
    tune_jobs,
)
from runner.study.records import FINAL, ArmPlan, RunRecord
from runner.study.spec import SPLIT_KEYS, Study, describe, key_of, parse_text, run_overrides
from runner.study.worker import POLL, REFUSED, Local, result_of


class Interrupted(Exception):
    """Ctrl-C / SIGTERM: the runs in flight checkpointed; a re-run on the same DIR resumes."""


def study_files() -> list[tuple[Path, str]]:

    return [(p, describe(p.read_text())) for p in sorted(EXPERIMENTS.glob("*/study.yaml"))]


def load(path, overrides: list[str]) -> Study:
    """Parse the study file and check every arm's config at one point of its space."""
    path = Path(path)
    if not path.is_file():
        have = ", ".join(str(p.relative_to(ROOT)) for p, _ in study_files()) or "none"
        raise ConfigError("FILE", f"no study file {str(path)!r}", have)
    study = parse_text(path, path.read_text(), overrides)
    searched = {d.key for d in study.search} | {
        d.key for ds in study.arm_search.values() for d in ds
    }
    for o in overrides:
        check("=" in o, "OVERRIDES", f"{o!r} is not KEY=VALUE")
        check(
            key_of(o) not in searched,
            key_of(o),
            "is searched by the study; an override would make every trial the same",
            "an unsearched key, or edit search:",
        )
        check(key_of(o) != "seed", "seed", "is set by the study (tune_seeds, seeds)")
        check(
            key_of(o) != "resume" and not key_of(o).startswith("hydra"),
            key_of(o),
            "is set by the study (run dirs under --out; a re-run resumes by itself)",
        )
    validate_configs(study)
    resolve_split(study)
    return study


def resolve_split(study: Study) -> None:
    """`vary_data`: each workload's split key (SPLIT_KEYS in its dataset config); on by default
    with replicates where every workload's dataset has one; asked for where one has none: an
    error naming the datasets that do."""

    for w in study.workloads:
        ovr = run_overrides(study, w, study.arms[study.baseline], {}, study.tune_seeds[0])
        ds = compose(ovr).dataset
        key = next((k for k in SPLIT_KEYS if isinstance(ds.get(k), int)), None)
        if key is not None:
            study.split[w] = (key, int(ds[key]))
        elif study.vary_data:
            raise ConfigError(
                "vary_data",
                f"the dataset of workload {w!r} has no split seed "
                f"({' or '.join(SPLIT_KEYS)}) to re-draw per replicate",
                "vary_data: false, or a dataset with one: mnist1d, csv, tweets, hf",
            )
    if study.vary_data is None:
        study.vary_data = study.replicates > 1 and len(study.split) == len(study.workloads)


def validate_configs(study: Study) -> None:
    """Compose and validate each workload x arm as `tricks train` would (unknown keys and
    options, bad values), with and without its search space's centre point."""
    for w, arm, ovr in ((w, a, o) for w in study.workloads for a, o in study.arms.items()):
        where = f"arms.{arm}" + (f" (workload {w})" if len(study.workloads) > 1 else "")
        try:
            precheck(run_overrides(study, w, ovr, {}, study.tune_seeds[0]))
        except ConfigError as e:
            raise ConfigError(where, str(e))
        points = [("search", study.search)]
        if study.arm_search.get(arm):
            points.append((f"arm_search.{arm}", study.search + study.arm_search[arm]))
        for key, dims in points:
            centre = {d.key: d.value(0.5) for d in dims}
            try:
                precheck(run_overrides(study, w, ovr, centre, study.tune_seeds[0]))
            except ConfigError as e:
                raise ConfigError(key, f"{where}: {e}")


# -- the ledger and the coordinator ----------------------------------------------------------


def open_ledger(study: Study, out: Path, storage: str | None, heartbeat: int) -> Ledger:
    """DIR's ledger (created on the first run); one of another study file is refused."""
    led = Ledger(
        storage or default_url(out), study_name(out), create=True, heartbeat=heartbeat, root=out
    )
    old = led.meta("study_text")
    if old is not None and not same_study_text(old, study.text):
        raise ConfigError(
            "--storage",
            f"the ledger {led.name!r} in {led.url} holds a study of another study file",
            "the same study file, or another --out",
        )
    for k, v in {
        "out": str(out.resolve()),
        "study_text": study.text,
        "select": study.select,
        "metric": study.metric,
        "state": "running",
    }.items():
        led.set_meta(k, v)
    return led


class Coordinator:
    """Enqueues a phase's runs, keeps `parallel` local workers going, waits on the ledger (and
    re-queues dead workers' runs) until every run has a final status; drives the view."""

    def __init__(self, study: Study, out: Path, parallel: int, progress, ledger: Ledger):
        self.study, self.out, self.progress, self.ledger = study, out, progress, ledger
        self.parallel = parallel
        self.local = Local(ledger, parallel, out / "runs" / "_logs")  # runs/: git-ignored
        self.view, self.done, self.failed, self.skipped, self.best = None, 0, 0, 0, {}
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.last_beat = self.last_reap = 0.0

    def acquire(self) -> None:
        """The study's one coordinator: a live other one (any host) refuses this one."""
        c = self.ledger.meta("coordinator")
        if isinstance(c, dict) and (c.get("host"), c.get("pid")) != (
            self.me["host"],
            self.me["pid"],
        ):
            fresh = time.time() - float(c.get("seen", 0)) < self.ledger.grace
            dead_here = c.get("host") == self.me["host"] and not alive(int(c.get("pid", 0)))
            if fresh and not dead_here:
                raise ConfigError(
                    "--out",
                    f"{self.out} is coordinated by another tricks study (pid {c.get('pid')} on "
                    f"{c.get('host')}, seen {time.time() - float(c['seen']):.0f} s ago)",
                    "wait for it to finish; tricks worker --storage URL adds workers to it",
                )
        self.beat()

    def beat(self) -> None:
        self.ledger.set_meta("coordinator", {**self.me, "seen": time.time()})
        self.last_beat = time.time()

    def start_view(self, total: int, label: str) -> None:
        from runner.log.progress import SweepProgress  # rich's live view: only with a terminal view

        self.close_view()
        self.view = SweepProgress(total, label, self.progress)
        self.done = self.failed = self.skipped = 0

    def close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def _note(self, rec: RunRecord) -> None:
        self.done += 1
        self.failed += rec.status != "completed"
        v = rec.result.get("value")
        if rec.phase == "tune" and isinstance(v, (int, float)):
            old = self.best.get(rec.label)
            if old is None or (v > old if self.study.select_higher else v < old):
                self.best[rec.label] = v
        if self.view is not None:
            note = " · ".join(
                f"{k.split('/', 1)[1] if len(self.study.workloads) == 1 else k} {v:.4g}"
                for k, v in self.best.items()
            )
            self.view.update(
                self.done, self.failed, f"best so far: {note}" if note else "", self.skipped
            )

    def tick(self, width: int | None) -> None:
        if time.time() - self.last_beat > self.ledger.heartbeat:
            self.beat()
        if time.time() - self.last_reap > 1.0:  # a dead local worker's run: within a second
            self.ledger.reap()
            self.last_reap = time.time()
        self.local.ensure(max(1, self.parallel) if width == 1 else self.parallel)

    def run(self, jobs: list[RunRecord], width: int | None = None) -> None:
        """Enqueue what the ledger lacks (a run dir completed already: recorded completed, as
        the inputs are pinned) and wait for every run. `width` 1: the pinned timing runs."""
        have = self.ledger.runs()
        done = {
            j.key: result_of(self.out / j.key, j, self.study.select, self.study.metric)
            for j in jobs
            if j.key not in have and status_of(self.out / j.key) == "completed"
        }
        self.ledger.enqueue(jobs, done)
        self.ledger.retry_failed(jobs)
        seen: dict[str, RunRecord] = {}
        for j in jobs:  # no time spent here: the ETA leaves them out
            if j.key in done or (j.key in have and have[j.key].status == "completed"):
                self.skipped += 1
        while len(seen) < len(jobs):
            self.tick(width)
            runs = self.ledger.runs()
            for j in jobs:
                r = runs.get(j.key)
                if j.key not in seen and r is not None and r.status in FINAL:
                    seen[j.key] = r
                    self._note(r)
            if len(seen) < len(jobs):
                time.sleep(POLL)
        refused = [
            r.error[len(REFUSED) :] for r in seen.values() if (r.error or "").startswith(REFUSED)
        ]
        if refused:  # the same inputs gave another config: code changed under the study
            more = f" (and {len(refused) - 1} more run dirs)" if len(refused) > 1 else ""
            raise ConfigError(
                "--out",
                refused[0] + more + "; the study stops, no trial counted failed",
                "a new --out DIR, or the tricks commit that wrote its runs (study_input.json)",
            )

    def close(self, finished: bool) -> None:
        self.close_view()
        if finished:
            self.ledger.set_meta("state", "done")  # idle workers exit
        else:
            for p in self.local.procs.values():  # stop ours; a restart re-queues their runs
                if p.poll() is None:
                    p.terminate()
        self.local.close()
        self.ledger.set_meta("coordinator", None)


def measure_cost(study: Study, runner: Coordinator, w: str, arms: dict, points: dict) -> dict:
    """Interleaved timing runs in one worker; adds `<baseline>@<arm>` plans to `arms` for arms
    costing more than THRESHOLD x the baseline. Returns arm -> cost."""
    ovr = {a: p["overrides"] for a, p in arms.items()}
    warm = costmod.warmup_job(study, w, ovr, points)
    runner.start_view(
        1 + costmod.REPS * len(arms), f"cost {w}" if len(study.workloads) > 1 else "cost"
    )
    runner.run([warm], width=1)
    warmed = R.summary_of(runner.out / warm.run_dir)
    n = costmod.round_steps(study, R.sec_per_step_of(warmed))
    spe = warmed.get("steps_per_epoch")
    jobs = costmod.round_jobs(study, w, ovr, points, n)
    runner.run(jobs, width=1)
    per = {a: costmod.round_secs(runner.out, jobs, f"{w}/{a}") for a in arms}
    costs = costmod.ratios(per, study.baseline, n)
    base = arms[study.baseline]
    for a in list(arms):
        r = costs[a]["ratio"]
        if a != study.baseline and r is not None and r > costmod.THRESHOLD:
            name = f"{study.baseline}@{a}"
            forced = costmod.scaled_length(study, w, base["overrides"], r, spe)
            arms[name] = ArmPlan(name, tuple(base["overrides"]), tuple(forced), a)
    return costs


def select_workloads(study: Study, text: str | None) -> list[str]:
    """`--workloads a,b`: the named workloads in study order; all of them for None."""
    if text is None:
        return list(study.workloads)
    names = [n.strip() for n in text.split(",") if n.strip()]
    allowed = ", ".join(study.workloads)
    if not names:
        raise ConfigError(
            "--workloads", "names no workload", f"a comma-separated subset of {allowed}"
        )
    for n in names:
        if n not in study.workloads:
            raise ConfigError("--workloads", f"unknown workload {n!r}", allowed)
    return [w for w in study.workloads if w in names]


def execute(
    study: Study,
    out,
    parallel: int = 1,
    progress="auto",
    only=None,
    storage: str | None = None,
    heartbeat: int = HEARTBEAT,
    slurm: tuple | None = None,
) -> dict:
    """Run (or resume) the study into `out`; returns study.json's content. `only`: a subset of
    its workloads (`--workloads`): the others keep the records an earlier run on `out` wrote to
    study.json (a study run in pieces, e.g. one per session or machine; runs/ may be gone).
    `storage`: the ledger's URL (default sqlite:///DIR/study.db); `parallel` 0: no local
    worker (`tricks worker` processes do the runs; the timing runs of equal compute still run
    in one local worker); `slurm` (N, params): N more workers as SLURM jobs."""
    out = Path(out)
    names = list(only) if only else list(study.workloads)
    lockfile = lock(out)
    coord, finished = None, False
    try:
        earlier = earlier_workloads(out, study)
        pin(study, out, names)
        coord = Coordinator(
            study, out, parallel, progress, open_ledger(study, out, storage, heartbeat)
        )
        coord.acquire()
        if slurm and slurm[0]:
            from runner.study.slurm import submit_workers  # submitit only where asked for

            jobs = submit_workers(slurm[0], coord.ledger, slurm[1])
            print(f"submitted {len(jobs)} SLURM worker jobs ({jobs[0].job_id} ...)", flush=True)
        plans, costs, trials, chosen = run_phases(study, coord, names)
        finished = True
    except KeyboardInterrupt:
        raise Interrupted()
    finally:
        if coord is not None:
            coord.close(finished)
        lockfile.unlink(missing_ok=True)
    result = assemble(study, out, plans, trials, chosen, costs, earlier)
    write(result, out)
    return result


def run_phases(study: Study, coord: Coordinator, names: list[str]):
    """cost (equal compute) -> tune -> select -> confirm, each phase through the ledger, every
    replicate together. trials[w][r][arm]: replicate r's trials; chosen[w][r][arm]: its pick."""
    plans, costs, trials, chosen = {}, {}, {}, {}
    reps = range(study.replicates)
    for w in names:
        plans[w] = arm_plans(study)
        if study.equal_compute:  # measured once, at replicate 0's points: a cost, not a score
            costs[w] = measure_cost(study, coord, w, plans[w], points_for(study, plans[w]))
    tune = {
        w: [tune_jobs(study, w, plans[w], points_for(study, plans[w], r), r) for r in reps]
        for w in names
    }
    coord.start_view(n_runs(study, sum(len(p) for p in plans.values())), "study")
    coord.run([j for w in names for r in reps for j in tune[w][r][1]])
    for w in names:
        trials[w] = [tune[w][r][0] for r in reps]
        for per in trials[w]:
            for t in per.values():
                R.score_trials(coord.out, t, study.select)
        chosen[w] = [
            {a: R.choose(t, study.select_higher) for a, t in per.items()} for per in trials[w]
        ]
    coord.run(
        [
            j
            for w in names
            for r in reps
            for j in confirm_jobs(study, w, plans[w], trials[w][r], chosen[w][r], r)
        ]
    )
    return plans, costs, trials, chosen


def replicates_line(study: Study) -> str:
    data = (
        "each its own split ("
        + ", ".join(f"{w}: dataset.{k}" for w, (k, _) in study.split.items())
        + " + r)"
        if study.vary_data
        else "the same split"
    )
    return (
        f"replicates {study.replicates}: each its own Sobol scramble (search_seed + r), tune "
        f"seeds {[study.rep_tune_seeds(r) for r in range(study.replicates)]}, confirmation "
        f"seeds {[study.rep_seeds(r) for r in range(study.replicates)]}, {data}; every arm "
        "paired by replicate"
    )


def dry_run(study: Study, only=None) -> str:
    """The plan, without running anything (`only`: the workloads a run with --workloads runs)."""
    arms = arm_plans(study)
    pts = points_for(study, arms)
    names = list(only) if only else list(study.workloads)
    n = n_runs(study, len(arms)) * len(names)
    lines = [
        f"study {study.name}: {study.description}",
        f"workloads: {', '.join(f'{w} {study.workloads[w]}' for w in names)}",
        f"baseline: {study.baseline}; select {study.select} "
        f"({'max' if study.select_higher else 'min'}), report {study.metric}",
        f"budget {study.budget} trials per arm x tune seeds {study.tune_seeds}; "
        f"confirmation seeds {study.seeds}",
    ]
    if study.replicates > 1:
        lines.append(replicates_line(study))
    for a, plan in arms.items():
        lines.append(f"arm {a}: {' '.join(plan['overrides']) or '(common only)'}")
        for i, p in enumerate(pts[a]):
            lines.append(f"  trial {i:2d}: " + " ".join(f"{k}={v}" for k, v in p.items()))
    if study.equal_compute:
        k = len(arms) - 1
        lines.append(
            f"equal compute: 1 warm-up + {costmod.REPS} x {len(arms)} timing runs per workload "
            f"first (each >= {study.cost_steps} steps and >= {study.cost_seconds:g} s of the "
            f"baseline; an arm's cost: its fastest round); each arm > "
            f"{costmod.THRESHOLD}x the baseline adds an arm {study.baseline}@ARM "
            f"(up to {k * len(names)} arms, {n_runs(study, k) * len(names)} runs more)"
        )
    lines.append(f"runs: {n}" + (" (+ equal-compute arms)" if study.equal_compute else ""))
    return "\n".join(lines)
