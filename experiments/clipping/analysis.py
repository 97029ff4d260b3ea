"""Clipping's own analysis for `tricks study` (the `analysis:` of study.yaml).

Divergence is a result here, so this reads what the generic report only counts:
- the tuning trials as a paired table: every arm was tried at the SAME lr points (the shared
  `search` key), so per lr region (stable / in between / diverging, split where the previous
  one-seed probe found unclipped SGD training at lr 0.3 and diverging at 1.0) it gives each
  arm's failed k/n and its best val/acc there;
- the confirmation runs: failed k/n, how many reach a target training loss and in how many
  steps (the first step where the mean of the last `SMOOTH` logged train/loss values is <=
  `TARGET_LOSS`), test/acc and the final training loss;
- one figure per workload: val/acc of every trial against lr (failed trials marked at the bottom),
  and the confirmation runs' mean train/loss curves.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`, study.json's
content in, markdown out; plots are written into study_dir.
"""

from __future__ import annotations

from pathlib import Path

from runner.study.analysis_kit import fmt, last, load_runs, mean_ci, pyplot, save_figure, workloads

STABLE_BELOW = 0.5  # lr < this: the region where unclipped SGD trained in the probe
DIVERGING_FROM = 0.7  # lr >= this: where it diverged
TARGET_LOSS = 1.0
SMOOTH = 3
LR_KEY = "optimizer.lr"
THRESHOLD_KEYS = ("clip.max_norm", "clip.max_value")


def steps_to(rows: list[dict], key: str, target: float, smooth: int = SMOOTH) -> int | None:
    """First step at which the mean of the last `smooth` logged `key` values is <= target."""
    vals = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    for i in range(smooth - 1, len(vals)):
        window = [v for _, v in vals[i - smooth + 1 : i + 1]]
        if sum(window) / smooth <= target:
            return vals[i][0]
    return None


def region(lr: float) -> str:
    if lr < STABLE_BELOW:
        return "stable"
    return "diverging" if lr >= DIVERGING_FROM else "between"


def trial_table(arms: dict) -> list[str]:
    regions = ("stable", "between", "diverging")
    lines = [
        (
            f"| arm | lr < {STABLE_BELOW:g}: failed | best val | {STABLE_BELOW:g} ≤ lr < "
            f"{DIVERGING_FROM:g}: failed | best val | lr ≥ {DIVERGING_FROM:g}: failed | best val |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for name, rec in arms.items():
        cells = {r: [] for r in regions}
        for t in rec.get("trials", []):
            lr = (t.get("params") or {}).get(LR_KEY)
            if isinstance(lr, (int, float)):
                cells[region(lr)].append(t)
        row = [name]
        for r in regions:
            ts = cells[r]
            failed = sum(t.get("status") != "completed" for t in ts)
            vals = [
                t["select_value"] for t in ts if isinstance(t.get("select_value"), (int, float))
            ]
            row += [f"{failed}/{len(ts)}", f"{max(vals):.4f}" if vals else "n/a"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def chosen_text(rec: dict) -> str:
    c = rec.get("chosen") or {}
    parts = [f"lr {c[LR_KEY]:.3g}"] if isinstance(c.get(LR_KEY), (int, float)) else []
    parts += [
        f"{k.split('.')[-1]} {c[k]:.3g}"
        for k in THRESHOLD_KEYS
        if isinstance(c.get(k), (int, float))
    ]
    return ", ".join(parts) or "none completed"


def confirm_table(study_dir: Path, arms: dict) -> tuple[list[str], dict]:
    lines = [
        "| arm | chosen | failed | reached | steps to target | test/acc | final train/loss |",
        "|---|---|---|---|---|---|---|",
    ]
    curves = {}
    for name, rec in arms.items():
        dirs = (rec.get("final") or {}).get("run_dirs") or []
        runs = load_runs(study_dir, dirs)
        done = [r for r in runs if r.status == "completed"]
        hit = [
            s for s in (steps_to(r.rows, "train/loss", TARGET_LOSS) for r in runs) if s is not None
        ]
        ms, hs = mean_ci(hit)
        ma, ha = mean_ci([r.value("test/acc") for r in done])
        mf, hf = mean_ci([last(r.rows, "train/loss") for r in done])
        lines.append(
            f"| {name} | {chosen_text(rec)} | {len(dirs) - len(done)}/{len(dirs)} | "
            f"{len(hit)}/{len(dirs)} | {fmt(ms, hs, 0)} | {fmt(ma, ha)} | {fmt(mf, hf)} |"
        )
        curves[name] = runs
    return lines, curves


def mean_curve(runs: list, key: str) -> tuple[list, list]:
    per = [
        {r["step"]: r[key] for r in run.rows if isinstance(r.get(key), (int, float))}
        for run in runs
    ]
    per = [p for p in per if p]
    if not per:
        return [], []
    steps = sorted(set.intersection(*(set(p) for p in per)))
    return steps, [sum(p[s] for p in per) / len(per) for s in steps]


def plot(study_dir: Path, name: str, arms: dict, curves: dict) -> str | None:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for arm, rec in arms.items():
        pts = [
            ((t.get("params") or {}).get(LR_KEY), t.get("select_value"))
            for t in rec.get("trials", [])
        ]
        ok = [
            (lr, v) for lr, v in pts if isinstance(lr, (int, float)) and isinstance(v, (int, float))
        ]
        bad = [
            lr for lr, v in pts if isinstance(lr, (int, float)) and not isinstance(v, (int, float))
        ]
        line = a1.plot([p[0] for p in ok], [p[1] for p in ok], "o", label=arm)[0] if ok else None
        if bad:
            a1.plot(
                bad,
                [0.0] * len(bad),
                "x",
                color=line.get_color() if line else None,
                label=None if line else arm,
            )
        steps, mean = mean_curve(curves.get(arm, []), "train/loss")
        if steps:
            n_bad = sum(r.status != "completed" for r in curves[arm])
            a2.plot(
                steps, mean, label=arm + (f" ({n_bad}/{len(curves[arm])} failed)" if n_bad else "")
            )
        drawn = drawn or bool(ok or bad or steps)
    if not drawn:
        plt.close(fig)
        return None
    for x in (STABLE_BELOW, DIVERGING_FROM):
        a1.axvline(x, color="k", ls=":", lw=1)
    a1.set_xscale("log")
    a1.set_xlabel("lr (tuning trials; x = failed)")
    a1.set_ylabel("val/acc")
    a1.legend(fontsize=7)
    a2.axhline(TARGET_LOSS, color="k", ls=":", lw=1)
    a2.set_yscale("log")
    a2.set_ylim(top=4.0)  # a diverging curve leaves the plot instead of flattening it
    a2.set_xlabel("step (confirmation runs, mean over seeds)")
    a2.set_ylabel("train/loss")
    a2.legend(fontsize=7)
    fname = f"clipping_{name or 'main'}.png"
    save_figure(fig, Path(study_dir) / fname)
    return fname


def analyse(study: dict, study_dir: Path) -> str:
    study_dir = Path(study_dir)
    out = [
        (
            "Tuning trials by lr region (every arm at the same lr points; failed = diverged or "
            "otherwise stopped), then the confirmation runs at each arm's chosen point. A run "
            f"reaches the target when the mean of its last {SMOOTH} logged train/loss values is "
            f"<= {TARGET_LOSS:g}; steps to target: mean ± 95% CI over the runs that reach it."
        )
    ]
    for name, arms in workloads(study).items():
        if name is not None:
            out.append(f"\n### {name}")
        out += ["", "Tuning trials:", ""] + trial_table(arms)
        table, curves = confirm_table(study_dir, arms)
        out += ["", "Confirmation runs:", ""] + table
        fname = plot(study_dir, name, arms, curves)
        if fname:
            out.append(f"\n![val/acc against lr, and train/loss curves]({fname})")
    return "\n".join(out) + "\n"
