"""The derived-optimizers study's own analysis for `tricks study` (the `analysis:` of study.yaml).

Gradient accumulation's claim is an equality: 4 micro-batches of 25 accumulated make the same
update as one batch of 100 (the engine divides each micro-batch loss by accum_steps, and the
batcher's order depends only on the seed, so the 4 micro-batches are the batch of 100). Every arm
is tuned at the SAME lr points (the shared `search` key) on the same tune seed, so trial i of
`accum4x25` and trial i of the baseline are the same run up to float summation order (and, with
dropout, different dropout masks). This pairs them, trial by trial and confirmation seed by
seed, and reports the differences beside the seed-to-seed spread. On a dropout-free workload
they differ only by float summation order: a test example or two over 350 steps (the previous
recipe), but over 4,200 steps that grows to seed-level differences (the a5a402b study), so the
claim checked is equality in distribution.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`, study.json's
content in, markdown out.
"""

from __future__ import annotations

from pathlib import Path

from runner.study.analysis_kit import num, sd, workloads

ACCUM = "accum4x25"
LR_KEY = "optimizer.lr"


def trial_pairs(base: dict, accum: dict) -> list[tuple]:
    """(lr, baseline's select value, accumulation's) for the trials at the same point."""
    out = []
    for tb, ta in zip(base.get("trials", []), accum.get("trials", [])):
        lr_b, lr_a = (tb.get("params") or {}).get(LR_KEY), (ta.get("params") or {}).get(LR_KEY)
        if num(lr_b) and lr_b == lr_a:
            out.append((lr_b, tb.get("select_value"), ta.get("select_value")))
    return out


def seed_pairs(base: dict, accum: dict) -> list[tuple]:
    """(seed, baseline's metric, accumulation's) for the confirmation seeds both completed."""
    fb, fa = base.get("final") or {}, accum.get("final") or {}
    vb = dict(zip(fb.get("seeds", []), fb.get("values", [])))
    va = dict(zip(fa.get("seeds", []), fa.get("values", [])))
    return [(s, vb[s], va[s]) for s in vb if s in va and num(vb[s]) and num(va[s])]


def fmt(v) -> str:
    return f"{v:.4f}" if num(v) else "failed"


def workload_lines(arms: dict, baseline: str, select: str, metric: str) -> list[str]:
    base, accum = arms.get(baseline), arms.get(ACCUM)
    if not base or not accum:
        return [f"No `{ACCUM}` and `{baseline}` arms here."]
    lines = [
        f"Tuning trials at the same lr (`{select}`, one tune seed):",
        "",
        f"| lr | {baseline} | {ACCUM} | difference |",
        "|---|---|---|---|",
    ]
    diffs = []
    for lr, b, a in trial_pairs(base, accum):
        d = a - b if num(a) and num(b) else None
        diffs += [abs(d)] if d is not None else []
        lines.append(
            f"| {lr:.3g} | {fmt(b)} | {fmt(a)} | {f'{d:+.4f}' if d is not None else 'n/a'} |"
        )
    seeds = seed_pairs(base, accum)
    seed_diffs = [a - b for _, b, a in seeds]
    spread = sd([b for _, b, _ in seeds])
    lines += [
        "",
        (
            f"Largest |difference| over the paired trials: "
            f"{f'{max(diffs):.4f}' if diffs else 'n/a'}."
        ),
        "",
        f"Confirmation runs (`{metric}`; each arm at its own chosen point, so equal only "
        f"where both chose the same lr): "
        + (
            ", ".join(f"seed {s} {d:+.4f}" for (s, _, _), d in zip(seeds, seed_diffs))
            or "none paired"
        )
        + ".",
    ]
    if num(spread):
        lines.append(f"The baseline's seed-to-seed standard deviation there: {spread:.4f}.")
    return lines


def analyse(study: dict, study_dir: Path) -> str:
    baseline = study.get("baseline", "none")
    select, metric = study.get("select", "val/acc"), study.get("metric", "test/acc")
    out = [
        (
            f"Gradient accumulation ({ACCUM}) against the batch of 100 it should equal, paired at "
            "the same lr points and seeds. With dropout 0 the two compute the same function on "
            "the same examples in the same order; with dropout the masks differ."
        )
    ]
    for name, arms in workloads(study).items():
        if name is not None:
            out.append(f"\n### {name}")
        out += [""] + workload_lines(arms, baseline, select, metric)
    return "\n".join(out) + "\n"
