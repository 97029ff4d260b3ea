"""The study protocol: validate -> (measure cost) -> tune -> select -> confirm -> verdict."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from runner import EXPERIMENTS_DIR as EXPERIMENTS
from runner import ROOT
from runner.errors import ConfigError, check
from runner.overrides import precheck
from runner.study import cost as costmod
from runner.study import results as R
from runner.study.pool import REFUSED, Job, Pool, status_of
from runner.study.space import edges, trial_points
from runner.study.spec import Study, key_of, merge, parse_text, run_overrides


class Interrupted(Exception):
    """Ctrl-C / SIGTERM: the runs in flight checkpointed; a re-run on the same DIR resumes."""


def study_files() -> list[tuple[Path, str]]:
    from runner.study.spec import describe

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
    return study


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


# -- DIR: the lock and the pinned inputs -------------------------------------------------------


def lock(out: Path) -> Path:
    """Claim DIR for this process; a second study on DIR refuses (a dead holder is replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    f = out / ".study.lock"
    for _ in range(2):
        try:
            fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return f
        except FileExistsError:
            try:
                pid = int(f.read_text().strip() or 0)
                os.kill(pid, 0)
                alive = pid != os.getpid()
            except (OSError, ValueError):
                alive = False
            if alive:
                raise ConfigError(
                    "--out",
                    f"{out} is in use by another tricks study (pid {pid})",
                    "wait for it to finish, or another --out",
                )
            f.unlink(missing_ok=True)
    raise ConfigError("--out", f"cannot lock {out}")


# Keys that only read finished runs (no run depends on them): a resumed study may add or change
# them, and recomputes them from DIR's runs.
READING_KEYS = ("compare", "analysis")


def same_study_text(old: str, new: str) -> bool:
    """Whether two study files make the same runs: equal YAML content but for READING_KEYS. A
    comment or the layout may change between the pieces of a study (a corrected note, a measured
    time), and so may the arm-against-arm pairs or the analysis file; any other key not."""
    if old == new:
        return True
    try:
        a, b = yaml.safe_load(old), yaml.safe_load(new)
    except yaml.YAMLError:
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    return {k: v for k, v in a.items() if k not in READING_KEYS} == {
        k: v for k, v in b.items() if k not in READING_KEYS
    }


def pin(study: Study, out: Path, names: list[str] | None = None) -> None:
    """Save the study file and OVERRIDES in DIR; a re-run must bring the same ones."""
    inputs = {"study_file": str(study.path), "overrides": study.overrides}
    saved, meta = out / "study.yaml", out / "study_input.json"
    if saved.is_file():
        if not same_study_text(saved.read_text(), study.text):
            was = json.loads(meta.read_text()).get("study_file") if meta.is_file() else saved
            raise ConfigError(
                "--out",
                f"{out} holds a study of another study file ({was})",
                "the same study file, or another --out",
            )
        inputs = json.loads(meta.read_text()) if meta.is_file() else inputs
        old = inputs.get("overrides", [])
        if old != study.overrides:
            raise ConfigError(
                "OVERRIDES",
                f"{out} was run with {' '.join(old) or 'none'}",
                "the same overrides, or another --out",
            )
    from runner.gitinfo import checkout_commit, machine_info

    sha, dirty = checkout_commit(ROOT)  # a resumed study may span commits: each start is recorded
    inv = {
        "commit": sha,
        "dirty": dirty,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),  # a resumed study may span machines too
    }
    if names is not None and names != list(study.workloads):
        inv["workloads"] = names
    inputs.setdefault("invocations", []).append(inv)
    saved.write_text(study.text)
    meta.write_text(json.dumps(inputs, indent=2) + "\n")


# -- the plan ----------------------------------------------------------------------------------


def arm_plans(study: Study) -> dict[str, dict]:
    return {
        a: {"overrides": o, "forced": [], "equal_compute_of": None} for a, o in study.arms.items()
    }


def points_for(study: Study, arms: dict) -> dict[str, list[dict]]:
    own = {a: study.space(a)[len(study.search) :] for a in arms}
    return trial_points(study.search, own, study.budget, study.search_seed)


def _ovr(study: Study, w: str, arm: str, plan: dict, params: dict, seed: int) -> list[str]:
    # `arm` in every run's config: `tricks compare DIR/runs/main --baseline arm=none` groups
    # the runs by arm even where two arms share a config
    return merge(
        run_overrides(study, w, plan["overrides"], params, seed), plan["forced"], [f"+arm={arm}"]
    )


def tune_jobs(study: Study, w: str, arms: dict, points: dict) -> tuple[dict, list[Job]]:
    """arm -> its trial records (params, run dirs), and the jobs, trial-major so every arm
    advances together (a partial study is balanced, the progress view's best-so-far fills)."""
    trials, jobs = {a: [] for a in arms}, []
    for i in range(study.budget):
        for a, plan in arms.items():
            dirs = [f"runs/{w}/{a}/trial-{i:02d}-seed-{s}" for s in study.tune_seeds]
            trials[a].append(
                {"index": i, "params": points[a][i], "run_dir": dirs[0], "run_dirs": dirs}
            )
            jobs += [
                Job(_ovr(study, w, a, plan, points[a][i], s), Path(d), f"{w}/{a}")
                for s, d in zip(study.tune_seeds, dirs)
            ]
    return trials, jobs


def confirm_dir(w: str, a: str, trial: int, seed: int) -> str:
    # the chosen trial is in the name: a different choice never meets another config's run
    return f"runs/{w}/{a}/confirm-trial-{trial:02d}-seed-{seed}"


def confirm_jobs(study: Study, w: str, arms: dict, trials: dict, chosen: dict) -> list[Job]:
    return [
        Job(
            _ovr(study, w, a, arms[a], trials[a][i]["params"], s),
            Path(confirm_dir(w, a, i, s)),
            f"{w}/{a}",
        )
        for s in study.seeds
        for a, i in chosen.items()
        if i is not None
    ]


def n_runs(study: Study, n_arms: int) -> int:
    return n_arms * (study.budget * len(study.tune_seeds) + len(study.seeds))


# -- running -----------------------------------------------------------------------------------


class Runner:
    """Hands jobs to the pool (runs completed already are skipped here), drives the view."""

    def __init__(self, study: Study, out: Path, parallel: int, progress):
        self.study, self.out, self.progress = study, out, progress
        self.pool = Pool(parallel, out / "runs" / "_logs")  # runs/: git-ignored
        self.view, self.done, self.failed, self.skipped, self.best = None, 0, 0, 0, {}

    def start_view(self, total: int, label: str) -> None:
        from runner.log.progress import SweepProgress

        self.close_view()
        self.view = SweepProgress(total, label, self.progress)
        self.done = self.failed = self.skipped = 0

    def close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None

    def _note(self, job: Job, status: str) -> None:
        self.done += 1
        self.failed += status != "completed"
        v = R.run_value(self.out / job.run_dir, self.study.select)
        if v is not None and "/trial-" in str(job.run_dir):
            old = self.best.get(job.label)
            hi = self.study.select_higher
            if old is None or (v > old if hi else v < old):
                self.best[job.label] = v
        if self.view is not None:
            note = " · ".join(
                f"{k.split('/', 1)[1] if len(self.study.workloads) == 1 else k} {v:.4g}"
                for k, v in self.best.items()
            )
            self.view.update(
                self.done, self.failed, f"best so far: {note}" if note else "", self.skipped
            )

    def run(self, jobs: list[Job], width: int | None = None) -> None:
        todo = []
        for j in jobs:
            if status_of(self.out / j.run_dir) == "completed":
                self.skipped += 1  # no time spent here: the ETA leaves it out
                self._note(j, "completed")  # inputs are pinned: a completed run is this run
            else:
                todo.append(j)
        absolute = [Job(j.overrides, self.out / j.run_dir, j.label) for j in todo]
        back = {id(a): j for a, j in zip(absolute, todo)}
        statuses = self.pool.run(absolute, lambda job, st: self._note(back[id(job)], st), width)
        if any(s == "interrupted" for s in statuses.values()):
            raise Interrupted()
        refused = [s[len(REFUSED) :] for s in statuses.values() if s.startswith(REFUSED)]
        if refused:  # the same inputs gave another config: code changed under the study
            more = f" (and {len(refused) - 1} more run dirs)" if len(refused) > 1 else ""
            raise ConfigError(
                "--out",
                refused[0] + more + "; the study stops, no trial counted failed",
                "a new --out DIR, or the tricks commit that wrote its runs (study_input.json)",
            )

    def close(self) -> None:
        self.close_view()
        self.pool.close()


def measure_cost(study: Study, runner: Runner, w: str, arms: dict, points: dict) -> dict:
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
            arms[f"{study.baseline}@{a}"] = {
                "overrides": base["overrides"],
                "equal_compute_of": a,
                "forced": costmod.scaled_length(study, w, base["overrides"], r, spe),
            }
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


def execute(study: Study, out, parallel: int = 1, progress="auto", only=None) -> dict:
    """Run (or resume) the study into `out`; returns study.json's content. `only`: a subset of
    its workloads (`--workloads`): the others keep the records an earlier run on `out` wrote to
    study.json (a study run in pieces, e.g. one per session or machine; runs/ may be gone)."""
    out = Path(out)
    names = list(only) if only else list(study.workloads)
    lockfile = lock(out)
    runner = Runner(study, out, parallel, progress)
    try:
        earlier = earlier_workloads(out, study)
        pin(study, out, names)
        plans, costs, trials = {}, {}, {}
        for w in names:
            plans[w] = arm_plans(study)
            if study.equal_compute:
                costs[w] = measure_cost(study, runner, w, plans[w], points_for(study, plans[w]))
        tune = {w: tune_jobs(study, w, plans[w], points_for(study, plans[w])) for w in names}
        n_arms = sum(len(p) for p in plans.values())
        runner.start_view(n_runs(study, n_arms), "study")
        runner.run([j for w in names for j in tune[w][1]])
        chosen = {}
        for w in names:
            trials[w] = tune[w][0]
            for t in trials[w].values():
                R.score_trials(out, t, study.select)
            chosen[w] = {a: R.choose(t, study.select_higher) for a, t in trials[w].items()}
        runner.run(
            [j for w in names for j in confirm_jobs(study, w, plans[w], trials[w], chosen[w])]
        )
    except KeyboardInterrupt:
        raise Interrupted()
    finally:
        runner.close()
        lockfile.unlink(missing_ok=True)
    result = assemble(study, out, plans, trials, chosen, costs, earlier)
    write(result, out)
    return result


# -- study.json ----------------------------------------------------------------------------------


def arm_record(
    study: Study, out: Path, w: str, a: str, plan: dict, trials: list[dict], chosen: int | None
) -> dict:
    space = study.space(a)
    params = trials[chosen]["params"] if chosen is not None else None
    dirs = [confirm_dir(w, a, chosen, s) for s in study.seeds] if params is not None else []
    rec = {
        "overrides": merge(plan["overrides"], plan["forced"]),
        "space": {d.key: d.text for d in space},
        "trials": trials,
        "chosen": params,
        "chosen_trial": chosen,
        "edge": edges(space, params) if params else [],
        "final": R.final_figures(out, dirs, study.seeds, study.metric, study.metric_higher),
        "diff": None,
        "verdict": "baseline"
        if a == study.baseline
        else ("no completed trial" if params is None else ""),
    }
    if params is None:
        rec["final"]["failed"] = len(study.seeds)
    if plan["equal_compute_of"]:
        rec["equal_compute_of"] = plan["equal_compute_of"]
        rec["verdict"] = f"equal-compute baseline of {plan['equal_compute_of']}"
    if study.target and dirs:
        rec["target"] = R.time_to_target(
            out, dirs, study.target, _higher_for(study, study.target["key"])
        )
    return rec


def _higher_for(study: Study, key: str) -> bool:
    from runner.stats import lower_is_better

    return study.select_higher if key == study.select else not lower_is_better(key)


def workload_arms(
    study: Study, out: Path, w: str, plans: dict, trials: dict, chosen: dict, costs: dict
) -> dict:
    arms = {a: arm_record(study, out, w, a, plans[a], trials[a], chosen[a]) for a in plans}
    tricks = [a for a in plans if a != study.baseline and not plans[a]["equal_compute_of"]]
    for a, v in R.verdicts(arms, [(a, study.baseline) for a in tricks], study.metric_higher):
        arms[a].update(
            diff=v["diff"],
            verdict=v["verdict"] if arms[a]["chosen"] is not None else arms[a]["verdict"],
        )
    ec = [(plans[b]["equal_compute_of"], b) for b in plans if plans[b]["equal_compute_of"]]
    for a, v in R.verdicts(arms, ec, study.metric_higher):  # a family of its own
        arms[a]["equal_compute"] = {
            "vs": dict((x, y) for x, y in ec)[a],
            **v,
            "family": "trick vs its equal-compute baseline (Holm across these pairs only)",
        }
    versus(arms, study.compare, study.metric_higher)
    sec = {a: R.sec_per_step(out, arms[a]["final"]["run_dirs"]) for a in arms}
    for a in arms:
        if a in costs:
            arms[a]["cost"] = costs[a]
        elif plans[a]["equal_compute_of"] and study.baseline in costs:
            # the baseline's step, trained the trick's measured ratio times longer
            of = costs[plans[a]["equal_compute_of"]]
            arms[a]["cost"] = {
                "sec_per_step": costs[study.baseline]["sec_per_step"],
                "ratio": of["ratio"],
                "source": "the baseline's step, ratio x the steps (total compute)",
            }
        else:
            base = sec.get(study.baseline)
            arms[a]["cost"] = {
                "sec_per_step": sec[a],
                "ratio": sec[a] / base if sec[a] and base else None,
                "source": "confirmation runs",
            }
    return arms


def versus(arms: dict, pairs: list, higher: bool) -> dict:
    """The study file's `compare:` pairs, arm against arm, a Holm family of their own, into
    arms[a]["versus"] (replacing any earlier: a resumed study may change the pairs). Reads only
    each arm's recorded final values and seeds, so it serves a record kept from an earlier piece
    whose runs are gone as well as one just made."""
    for rec in arms.values():
        rec.pop("versus", None)
    for (a, b), (_, v) in zip(pairs, R.verdicts(arms, pairs, higher)):
        arms[a].setdefault("versus", []).append(
            {"vs": b, **v, "family": "arm against arm (compare:, Holm across these pairs only)"}
        )
    return arms


def earlier_workloads(out: Path, study: Study) -> dict:
    """The workload records of DIR's study.json (an earlier run, maybe of other workloads), each
    with its `run` provenance; {} when there is none or it is of another study file."""
    try:
        old = json.loads((Path(out) / "study.json").read_text())
        same = same_study_text((Path(out) / "study.yaml").read_text(), study.text)
    except (OSError, ValueError):
        return {}
    nested = old.get("by_workload") if isinstance(old, dict) else None
    if not same or not isinstance(nested, dict) or len(study.workloads) < 2:
        return {}
    run = {k: old.get(k) for k in ("commit", "dirty", "finished", "machine")}
    kept = {
        w: {**v, "run": v.get("run") or run}
        for w, v in nested.items()
        if w in study.workloads and isinstance(v, dict) and "arms" in v
    }
    for v in kept.values():  # compare: may have changed since (a reading key)
        versus(v["arms"], study.compare, study.metric_higher)
    return kept


def assemble(
    study: Study,
    out: Path,
    plans: dict,
    trials: dict,
    chosen: dict,
    costs: dict,
    earlier: dict | None = None,
) -> dict:
    from runner.gitinfo import checkout_commit, machine_info

    sha, dirty = checkout_commit(ROOT)
    machine = machine_info()
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res = {
        "name": study.name,
        "description": study.description,
        "study_file": str(study.path),
        "overrides": study.overrides,
        "baseline": study.baseline,
        "select": study.select,
        "metric": study.metric,
        "higher_better": study.metric_higher,
        "select_higher_better": study.select_higher,
        "budget": study.budget,
        "tune_seeds": study.tune_seeds,
        "seeds": study.seeds,
        "search": {d.key: d.text for d in study.search},
        "arm_search": {a: {d.key: d.text for d in ds} for a, ds in study.arm_search.items()},
        "commit": sha,
        "dirty": dirty,
        "machine": machine,
        "invocations": _invocations(out),
        "equal_compute": study.equal_compute,
        "compare": [list(p) for p in study.compare],
        "target": study.target,
        "workloads": list(study.workloads),
        "analysis": str(study.analysis) if study.analysis else None,
        "finished": now,
    }
    run = {"commit": sha, "dirty": dirty, "finished": now, "machine": machine}
    per = {
        w: {
            "arms": workload_arms(study, out, w, plans[w], trials[w], chosen[w], costs.get(w, {})),
            "run": run,
        }
        for w in plans
    }
    if len(study.workloads) == 1:
        res["arms"] = next(iter(per.values()))["arms"]
        return R.clean(res)
    # a workload not run now keeps its earlier record (and says which commit made it)
    per = {w: per.get(w) or (earlier or {}).get(w) for w in study.workloads}
    res["by_workload"] = {w: v for w, v in per.items() if v}
    res["workloads_not_run"] = [w for w, v in per.items() if not v]
    res["dirty"] = any(bool(v["run"].get("dirty", True)) for v in res["by_workload"].values())
    return R.clean(res)


def _invocations(out: Path) -> list[dict]:
    try:
        return json.loads((out / "study_input.json").read_text()).get("invocations", [])
    except (OSError, ValueError):
        return []


def each_workload(result: dict):
    if "arms" in result:
        yield None, result["arms"]
    for w, v in result.get("by_workload", {}).items():
        yield w, v["arms"]


def failed_runs(result: dict) -> list[str]:
    out = []
    for _, arms in each_workload(result):
        for rec in arms.values():
            out += [e for t in rec["trials"] for e in t.get("errors", [])]
            out += [f"{f['run_dir']}: {f['error']}" for f in rec["final"]["failed_runs"]]
    return out


def write(result: dict, out: Path) -> list[Path]:
    """study.json, then the report (runner.study.report) and the recipe's analysis."""
    from runner.log import write_json_atomic

    write_json_atomic(out / "study.json", result)
    return make_report(result, out)


def make_report(result: dict, out: Path) -> list[Path]:
    """The recipe's analysis first (DIR/analysis.md), then the report, which appends it."""
    files = [out / "study.json"]
    missing = missing_runs(result, out)
    if result.get("analysis") and missing and (out / "analysis.md").is_file():
        # the analysis reads the run dirs: a committed study dir holds no runs/ (and a piece run
        # later only its own), so the analysis written where they were stays, with its plots
        print(
            f"note: analysis.md kept as it is: {len(missing)} of the run dirs it reads are not "
            f"in {out} (e.g. {missing[0]}); it is re-made where every run is",
            file=sys.stderr,
        )
    else:
        text = analysis(result, out)
        if text is not None:
            (out / "analysis.md").write_text(text.rstrip() + "\n")
            files.append(out / "analysis.md")
    from runner.study.report import write_report

    try:
        return files + list(write_report(result, out) or [])
    except Exception as e:  # study.json holds the result; --report-only retries the report
        print(
            f"warning: the report failed ({type(e).__name__}: {e}); study.json is written, "
            f"re-make the report with --report-only",
            file=sys.stderr,
        )
        return files


def missing_runs(result: dict, out: Path) -> list[str]:
    """The run dirs study.json names (tuning trials and confirmation runs) not under `out`."""
    names = []
    for _, arms in each_workload(result):
        for rec in arms.values():
            for t in rec.get("trials", []):
                names += t.get("run_dirs") or ([t["run_dir"]] if t.get("run_dir") else [])
            names += list((rec.get("final") or {}).get("run_dirs") or [])
    return [d for d in names if not (Path(d) if Path(d).is_absolute() else out / d).is_dir()]


def analysis(result: dict, out: Path) -> str | None:
    """The recipe's own analysis (study-file key `analysis:`): analyse(study, study_dir) -> md."""
    path = result.get("analysis")
    if not path:
        return None
    import importlib.util

    try:
        spec = importlib.util.spec_from_file_location(f"study_analysis_{result['name']}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return str(mod.analyse(result, out))
    except Exception as e:  # a broken analysis must not cost the study its report
        print(f"warning: analysis {path} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def report_only(out) -> list[Path]:
    out = Path(out)
    f = out / "study.json"
    if not f.is_file():
        raise ConfigError("--out", f"no study.json in {out}", "a directory a study ran into")
    return make_report(json.loads(f.read_text()), out)


def headline(result: dict) -> list[str]:
    lines = []
    for w, arms in each_workload(result):
        for a, rec in arms.items():
            if rec["verdict"] == "baseline":
                continue
            f, d = rec["final"], rec.get("diff") or {}
            m = f"{f['mean']:.4f}" if f["mean"] is not None else "n/a"
            dm = f"{d['mean']:+.4f}" if d.get("mean") is not None else ""
            ph = f", p_holm {d['p_holm']:.3g}" if d.get("p_holm") is not None else ""
            lines.append(
                f"{(w + '/') if w else ''}{a}: {result['metric']} {m} "
                f"({f['n']} seeds{', failed ' + str(f['failed']) if f['failed'] else ''})"
                f"{' diff ' + dm if dm else ''}{ph}: {rec['verdict']}"
            )
    return lines


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
