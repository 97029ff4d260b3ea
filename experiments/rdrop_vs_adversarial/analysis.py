"""R-Drop vs adversarial training's own analysis for `tricks study` (the `analysis:` of
study.yaml); the tweets recipe (experiments/rdrop_vs_adversarial_tweets) uses this file too.

The cost table, per workload: each arm's time per optimizer step as the study measured it (all
arms timed in one worker process, interleaved, `runs/_cost/<workload>/<arm>/rep-*` run dirs: each
round's figure and their median), its ratio to the baseline, and, for every arm dearer than
the baseline, the equal-compute baseline the study gave it (its training length) with the
trick's difference to it: the fair verdict for a trick that costs extra passes (Holm-adjusted
across those pairs, a family of its own).

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`, study.json's
content in, markdown out.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from runner.study.analysis_kit import cost_dir, num, run_sec_per_step, workloads


def rounds(study_dir: Path, workload: str, arm: str) -> list[float]:
    """Seconds per step of each interleaved cost round of `arm` (completed rounds only)."""
    root = Path(study_dir) / cost_dir(workload, arm)
    reps = sorted(root.glob("rep-[0-9]*")) if root.is_dir() else []  # not rep-warmup
    return [x for d in reps if (x := run_sec_per_step(d)) is not None]


def length_of(rec: dict) -> str:
    """The training length an arm's own overrides set (an equal-compute baseline's)."""
    for o in rec.get("overrides", []):
        if o.startswith(("trainer.max_steps=", "trainer.epochs=")):
            k, v = o.split("=", 1)
            return f"{v} {'steps' if k.endswith('max_steps') else 'epochs'}"
    return "the study's"


def diff_text(eq: dict, digits: int = 4) -> tuple[str, str, str]:
    d = eq.get("diff") or {}
    lo, hi = (d.get("ci95") or [None, None])[:2]
    if not num(d.get("mean")):
        return "n/a", "n/a", str(eq.get("verdict", ""))
    ci = f" [{lo:+.{digits}f}, {hi:+.{digits}f}]" if num(lo) and num(hi) else ""
    p = d.get("p_holm", d.get("p"))
    return (
        f"{d['mean']:+.{digits}f}{ci}",
        f"{p:.3g}" if num(p) else "n/a",
        str(eq.get("verdict", "")),
    )


def cost_table(study_dir: Path, workload: str, arms: dict, baseline: str) -> list[str]:
    lines = [
        (
            "| arm | ms / step (rounds) | × baseline | source | equal-compute baseline | its "
            "length | diff to it [95% CI] | p (Holm) | verdict |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rec in arms.items():
        if rec.get("equal_compute_of"):
            continue
        cost = rec.get("cost") or {}
        rs = rounds(study_dir, workload, name)
        sec = statistics.median(rs) if rs else cost.get("sec_per_step")
        ms = f"{sec * 1e3:.2f}" if num(sec) else "n/a"
        if rs:
            ms += " (" + ", ".join(f"{x * 1e3:.1f}" for x in rs) + ")"
        ratio = cost.get("ratio")
        eq = rec.get("equal_compute") or {}
        vs = eq.get("vs")
        if vs is None:  # which baseline arm was made for this one
            vs = next((b for b, r in arms.items() if r.get("equal_compute_of") == name), None)
        if name == baseline:
            row = [name, ms, "1.00×", cost.get("source", ""), "baseline", "", "", "", ""]
        elif vs is None:
            row = [
                name,
                ms,
                f"{ratio:.2f}×" if num(ratio) else "n/a",
                cost.get("source", ""),
                "none (within 10% of the baseline)",
                "",
                "",
                "",
                "",
            ]
        else:
            dt, pt, vt = diff_text(eq)
            row = [
                name,
                ms,
                f"{ratio:.2f}×" if num(ratio) else "n/a",
                cost.get("source", ""),
                vs,
                length_of(arms.get(vs, {})),
                dt,
                pt,
                vt,
            ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def analyse(study: dict, study_dir: Path) -> str:
    baseline = study.get("baseline", "none")
    out = [
        (
            "Cost per optimizer step as the study measured it: every arm timed in one process, "
            "interleaved rounds (each round's ms/step in brackets; median first); evaluation "
            "excluded. `source: confirmation runs` means no interleaved timing was made and the "
            "figure is the median over the arm's confirmation runs (noisier on a shared machine). "
            "Each arm dearer than 1.1× the baseline is compared with a baseline trained for as "
            "much more compute; those pairs are Holm-adjusted as their own family."
        )
    ]
    names = study.get("workloads") or ["main"]
    for name, arms in workloads(study).items():
        if name is not None:
            out.append(f"\n### {name}")
        # a one-workload study has no heading, but its runs sit under its workload's name
        dirname = name if name is not None else names[0]
        out += [""] + cost_table(Path(study_dir), dirname, arms, baseline)
    return "\n".join(out) + "\n"
