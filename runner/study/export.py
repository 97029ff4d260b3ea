"""study.json and the report: an export of the study's runs (the ledger's plan and statuses;
the figures read from the run dirs, the contract), assembled per workload and arm, with the
verdicts (Holm across the arms against the baseline), the equal-compute and arm-against-arm
families, costs, targets; then report.md/.html (runner.study.report) and the recipe's analysis."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path

from runner.config import TRICK_GROUPS, trick_target
from runner.errors import ConfigError
from runner.facts import static_facts
from runner.gitinfo import checkout_commit, machine_info
from runner.log import write_json_atomic
from runner.stats import lower_is_better
from runner.study import results as R
from runner.study.inputs import ROOT, same_study_text
from runner.study.plan import confirm_dir
from runner.study.space import edges
from runner.study.spec import AA_ARM, Study, merge
from runner.study.verdicts import calibration_lines, study_verdicts

# -- study.json ----------------------------------------------------------------------------------


def arm_record(
    study: Study, out: Path, w: str, a: str, plan: dict, trials: list, chosen: list
) -> dict:
    """Arm `a`'s record in workload `w`; trials[r], chosen[r]: replicate r's trials and pick.
    One replicate: the record as it always was. Several: `replicates` holds each one's pick and
    confirmation; `trials` all of them (each with its `replicate`), `edge` every replicate's,
    `final` the pooled confirmation runs; `chosen` is replicate 0's."""
    reps = [_replicate(study, out, w, a, r, trials[r], chosen[r]) for r in range(len(trials))]
    first = reps[0]
    dirs = [d for x in reps for d in x["final"]["run_dirs"]]
    rec = {
        "overrides": merge(plan["overrides"], plan["forced"]),
        "space": {d.key: d.text for d in study.space(a)},
        "trials": trials[0],
        "chosen": first["chosen"],
        "chosen_trial": first["chosen_trial"],
        "edge": first["edge"],
        "final": first["final"],
        "diff": None,
        "verdict": "baseline"
        if a == study.baseline
        else ("no completed trial" if all(x["chosen"] is None for x in reps) else ""),
    }
    if len(reps) > 1:
        planned = [s for x in reps for s in x["seeds"]]
        rec["trials"] = [{**t, "replicate": r} for r, ts in enumerate(trials) for t in ts]
        rec["edge"] = [{**e, "replicate": x["replicate"]} for x in reps for e in x["edge"]]
        rec["final"] = R.final_figures(out, dirs, planned, study.metric, study.metric_higher)
        rec["final"]["failed"] = sum(x["final"]["failed"] for x in reps)
        rec["replicates"] = reps
    if plan["equal_compute_of"]:
        rec["equal_compute_of"] = plan["equal_compute_of"]
        rec["verdict"] = f"equal-compute baseline of {plan['equal_compute_of']}"
    if study.target and dirs:
        rec["target"] = R.time_to_target(
            out, dirs, study.target, _higher_for(study, study.target["key"])
        )
    return rec


def _replicate(study: Study, out: Path, w: str, a: str, r: int, trials, chosen) -> dict:
    """Replicate r of arm a: what made it (scramble, seeds, split), its pick, its confirmation."""
    space = study.space(a)
    params = trials[chosen]["params"] if chosen is not None else None
    seeds = study.rep_seeds(r)
    dirs = [confirm_dir(w, a, chosen, s, study, r) for s in seeds] if params is not None else []
    final = R.final_figures(out, dirs, seeds, study.metric, study.metric_higher)
    if params is None:
        final["failed"] = len(seeds)
    return {
        "replicate": r,
        "search_seed": study.rep_search_seed(r),
        "tune_seeds": study.rep_tune_seeds(r),
        "seeds": seeds,
        "data": study.rep_data(w, r),
        "chosen": params,
        "chosen_trial": chosen,
        "select_value": trials[chosen]["select_value"] if chosen is not None else None,
        "edge": edges(space, params) if params else [],
        "final": final,
    }


def _higher_for(study: Study, key: str) -> bool:

    return study.select_higher if key == study.select else not lower_is_better(key)


def workload_arms(
    study: Study, out: Path, w: str, plans: dict, trials: list, chosen: list, costs: dict
) -> dict:
    """Workload w's arm records (trials[r][arm], chosen[r][arm]: replicate r's); the verdicts
    come after, study-wide (runner.study.verdicts: one Holm family across the workloads)."""
    arms = {
        a: arm_record(study, out, w, a, plans[a], [t[a] for t in trials], [c[a] for c in chosen])
        for a in plans
    }
    sec = {a: R.sec_per_step(out, arms[a]["final"]["run_dirs"]) for a in arms}
    for a in arms:  # cost as forward+backward passes too: the tricks' declared facts
        arms[a]["passes"] = declared_passes(plans[a]["overrides"])
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


PASSES_SOURCE = (
    "declared: each trick's `passes` fact (runner/facts.py; the engine does not count passes); "
    "1 for a run without a trick that declares more"
)


def declared_passes(overrides: list[str]) -> dict:
    """Forward+backward passes per optimizer step of a run with these overrides, from the tricks'
    declared `passes` facts (e.g. "2" for FGM, "~3 (double backward)" for a gradient penalty):
    `per_step` the largest leading number (None where a fact has none, e.g. "2+iters"), `facts`
    each trick's text. Time on a shared CPU measures Python overhead as well; passes do not."""
    facts = {}
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key not in TRICK_GROUPS:
            continue
        for opt in (x.strip() for x in value.strip("[]").split(",")):
            target = trick_target(key, opt) if opt and opt != "none" else None
            text = static_facts(target).get("passes") if target else None
            if isinstance(text, str):
                facts[f"{key}={opt}"] = text
    heads = [re.match(r"~?(\d+(?:\.\d+)?)(?:\s|$)", t) for t in facts.values()]
    per = max((float(m.group(1)) for m in heads if m), default=1.0)
    if any(m is None for m in heads):
        per = None
    return {"per_step": per, "facts": facts, "source": PASSES_SOURCE}


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
        "replicates": study.replicates,
        "seeds_per_replicate": len(study.seeds) // study.replicates,
        "vary_data": bool(study.vary_data),
        "split": {w: k for w, (k, _) in study.split.items()} if study.vary_data else {},
        "aa": study.aa,
        "aa_arm": AA_ARM if study.aa else None,
        "controls": list(study.controls),
    }
    run = {"commit": sha, "dirty": dirty, "finished": now, "machine": machine}
    per = {
        w: {
            "arms": workload_arms(study, out, w, plans[w], trials[w], chosen[w], costs.get(w, {})),
            "run": run,
        }
        for w in plans
    }
    for v in per.values():
        versus(v["arms"], study.compare, study.metric_higher)
    if len(study.workloads) == 1:
        res["arms"] = next(iter(per.values()))["arms"]
    else:
        # a workload not run now keeps its earlier record (and says which commit made it)
        per = {w: per.get(w) or (earlier or {}).get(w) for w in study.workloads}
        res["by_workload"] = {w: v for w, v in per.items() if v}
        res["workloads_not_run"] = [w for w, v in per.items() if not v]
        res["dirty"] = any(bool(v["run"].get("dirty", True)) for v in res["by_workload"].values())
    res["calibration"] = study_verdicts(res)
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
    from runner.study.report import write_report  # the report's plots: only at the end

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
    """One line per arm; the A/A calibration first (a better/worse A/A flags the study); each
    verdict with what qualifies it (provisional: an edge; conditional on one tuning)."""
    lines = calibration_lines(result)
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
                f"{' diff ' + dm if dm else ''}{ph}: {d.get('qualified') or rec['verdict']}"
            )
    return lines
