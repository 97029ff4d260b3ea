"""The study's verdicts (issue 32), from study.json's arm records, across all its workloads.

Each trick against the baseline is `runner.stats.compare_replicated` over the R x S paired
confirmation runs (replicate r of the arm paired with replicate r of the baseline; a t on the
R replicate mean differences, or with one replicate the seed-level paired t, conditional on
that one tuning); a failed confirmation run counts as the worst value (`fill_failed`), with
its k/n recorded. The families (`holm_families`), each adjusted on its own:

- primary: every trick vs the baseline, across every workload of the study;
- controls: the declared `controls:` and the A/A arm (calibration, not findings);
- equal compute: each costly trick vs the better, on validation, of the 1x baseline and the
  baseline given the trick's compute (`equal_compute_partner`).

A chosen value at an edge of its range (the arm's or the baseline's, any replicate) makes the
verdict provisional (`with_edges`). Reads only the records, so a workload kept from an earlier
piece of the study is judged with the rest."""

from __future__ import annotations

import statistics

from runner.stats import (
    Comparison,
    Family,
    compare_replicated,
    equal_compute_partner,
    finite,
    holm_families,
    with_edges,
)

FAMILY_TEXT = {
    Family.PRIMARY: "primary: every trick vs the baseline, Holm across all workloads",
    Family.CONTROLS: "controls (declared null controls, the A/A arm): Holm across these only",
    Family.EQUAL_COMPUTE: "trick vs its equal-compute partner (Holm across these pairs only)",
}


def _each(result: dict):
    if "arms" in result:
        yield None, result["arms"]
    for w, v in (result.get("by_workload") or {}).items():
        yield w, v["arms"]


def replicate_maps(rec: dict, seeds: list[int]) -> list[dict]:
    """Per replicate, seed -> confirmation value (None: a failed or missing run). A record
    without `replicates` is one replicate on the study's `seeds`."""
    reps = rec.get("replicates") or [{"seeds": seeds, "final": rec.get("final") or {}}]
    out = []
    for x in reps:
        f = x.get("final") or {}
        got = dict(zip(f.get("seeds") or [], f.get("values") or []))
        out.append({s: got.get(s) for s in x.get("seeds") or seeds})
    return out


def validation(rec: dict) -> float | None:
    """The arm's validation score: its chosen trials' select value, mean over replicates."""
    reps = rec.get("replicates")
    if reps:
        vals = [x.get("select_value") for x in reps]
    else:
        t = rec.get("chosen_trial")
        vals = [rec["trials"][t].get("select_value")] if t is not None else []
    vals = [v for v in vals if finite(v)]
    return statistics.fmean(vals) if vals else None


def diff_json(c: Comparison) -> dict:
    """study.json's `diff`: the keys it always had, then the replicated test's own."""
    d = c.to_json()
    s = c.pairs // c.replicates if c.replicates else 0
    method = (
        f"t on the {c.replicates} replicate mean differences ({c.replicates - 1} dof)"
        if c.replicates > 1
        else f"{c.test} over the seeds, conditional on one tuning"
    )
    return {
        "mean": d["diff"],
        "ci95": [d["ci_low"], d["ci_high"]],
        "p": d["p"],
        "p_holm": d["p_holm"],
        "test": c.test,
        "mde": d["mde"],
        "se": d["se"],
        "df": d["df"],
        "method": method,
        "replicates": c.replicates,
        "seeds_per_replicate": s,
        "pairs": c.pairs,
        "var_between": d["var_between"],
        "var_within": d["var_within"],
        "replicate_diffs": d["replicate_diffs"],
        "family": str(c.family),
        "family_size": c.family_size,
        "alpha_mde": c.alpha_mde,
        "failed": c.failed,
        "runs": c.runs,
        "conditional": c.conditional,
        "provisional": d["provisional"],
        "qualified": c.headline,
    }


def _compare(result: dict, w, a: str, rec: dict, base: str, brec: dict, fam) -> Comparison:
    seeds, higher = result.get("seeds") or [], result.get("higher_better", True)
    c = compare_replicated(
        replicate_maps(rec, seeds),
        replicate_maps(brec, seeds),
        higher,
        label=f"{w + '/' if w else ''}{a}",
        family=fam,
    )
    c = with_edges(c, rec.get("edge") or [])
    return with_edges(c, brec.get("edge") or [], "baseline's ")


def _equal_compute(result: dict, w, a: str, arms: dict, base: str):
    """(the partner's name, "1x"|"longer", val_1x, val_longer, its comparison) or None."""
    longer = f"{base}@{a}"
    if longer not in arms:
        return None
    v1, vl = validation(arms[base]), validation(arms[longer])
    which = equal_compute_partner(v1, vl, result.get("select_higher_better", True))
    vs = longer if which == "longer" else base
    c = _compare(result, w, a, arms[a], vs, arms[vs], Family.EQUAL_COMPUTE)
    return vs, which, v1, vl, c


def study_verdicts(result: dict) -> dict:
    """Fill every arm's `diff`/`verdict` (and `equal_compute`) in place; returns the A/A
    calibration ({} without an A/A arm)."""
    base, controls = result["baseline"], set(result.get("controls") or [])
    slots: list[tuple] = []  # (record, where, comparison, extra)
    for w, arms in _each(result):
        for a, rec in arms.items():
            if a == base or rec.get("equal_compute_of") or base not in arms:
                continue
            if rec.get("verdict") == "no completed trial":
                continue  # no replicate chose a trial: no confirmation to judge
            fam = Family.CONTROLS if a in controls else Family.PRIMARY
            slots.append((rec, "diff", _compare(result, w, a, rec, base, arms[base], fam), {}))
            ec = _equal_compute(result, w, a, arms, base)
            if ec is not None:
                vs, which, v1, vl, c = ec
                extra = {"vs": vs, "partner": which, "val_1x": v1, "val_longer": vl}
                slots.append((rec, "equal_compute", c, extra))
    done = holm_families([c for _, _, c, _ in slots])
    for (rec, where, _, extra), c in zip(slots, done):
        if where == "diff":
            rec["diff"], rec["verdict"] = diff_json(c), str(c.verdict)
        else:
            rec["equal_compute"] = {
                **extra,
                "diff": diff_json(c),
                "verdict": str(c.verdict),
                "family": FAMILY_TEXT[Family.EQUAL_COMPUTE],
            }
    return calibration(result)


def calibration(result: dict) -> dict:
    """The A/A arm's comparison per workload, and whether it flags the study (better/worse)."""
    aa = result.get("aa_arm")
    rows = [
        {"workload": w, "diff": arms[aa].get("diff"), "verdict": arms[aa].get("verdict")}
        for w, arms in _each(result)
        if aa and aa in arms
    ]
    if not rows:
        return {}
    flagged = [r for r in rows if r["verdict"] in ("better", "worse")]
    return {"arm": aa, "workloads": rows, "flagged": bool(flagged)}


def calibration_lines(result: dict) -> list[str]:
    """The A/A arm's difference and p, first: the study's own calibration."""
    cal = result.get("calibration") or {}
    lines = []
    for r in cal.get("workloads", []):
        d = r.get("diff") or {}
        where = f"{r['workload']}/" if r.get("workload") else ""
        dm = f"{d['mean']:+.4f}" if d.get("mean") is not None else "n/a"
        p = f"{d['p']:.3g}" if d.get("p") is not None else "n/a"
        lines.append(
            f"A/A calibration {where}{cal['arm']} (the baseline on another random path; true "
            f"difference 0): diff {dm}, p {p}: {r['verdict']}"
        )
    if cal.get("flagged"):
        lines.insert(
            0,
            "FLAGGED: the A/A arm was called better/worse: this study's verdicts sit inside the "
            "protocol's own noise (more replicates or seeds)",
        )
    return lines
