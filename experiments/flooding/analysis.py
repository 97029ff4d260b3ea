"""Flooding's own analysis for `tricks study` (the `analysis:` of study.yaml).

What the generic report does not show: whether flooding does what it says. Per workload:
- every tuning trial of the flood arm: its b, lr, val/acc, and the final train and test loss,
  so one sees the training loss held near b and what that does to the test loss;
- the confirmation runs of both arms: test/acc (best-val checkpoint), final/test/loss and the
  final train loss, mean +- 95% CI (the calibration effect of flooding shows in the loss);
- one figure: final train loss and final test loss of the trials against b (log x).

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`, study.json's
content in, markdown out; plots are written into study_dir.
"""

from __future__ import annotations

from pathlib import Path

from runner.study.analysis_kit import (
    finish_axes,
    fmt,
    last,
    mean_ci,
    pyplot,
    rows_of,
    run_path,
    save_figure,
    summary_of,
    workloads,
)

B_KEY = "reg.flooding.b"


def final_train_loss(run_dir: Path) -> float | None:
    v = last(rows_of(run_dir), "train/loss")
    return None if v is None else float(v)


def trial_rows(study_dir: Path, arm: dict) -> list[tuple]:
    out = []
    for t in arm.get("trials", []):
        d = run_path(study_dir, t["run_dir"])
        s = summary_of(d)
        out.append(
            (
                t["params"].get(B_KEY),
                t["params"].get("optimizer.lr"),
                t.get("select_value"),
                final_train_loss(d),
                s.get("final/test/loss"),
                t.get("status"),
            )
        )
    return out


def confirm_table(study_dir: Path, arms: dict) -> list[str]:
    lines = [
        "| arm | n | test/acc (best val) | final/test/loss | final train/loss |",
        "|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        dirs = [run_path(study_dir, d) for d in arm.get("final", {}).get("run_dirs", [])]
        done = [d for d in dirs if summary_of(d).get("status") == "completed"]
        lines.append(
            f"| {name} | {len(done)}/{len(dirs)} | "
            f"{fmt(*mean_ci([summary_of(d).get('test/acc') for d in done]))} | "
            f"{fmt(*mean_ci([summary_of(d).get('final/test/loss') for d in done]))} | "
            f"{fmt(*mean_ci([final_train_loss(d) for d in done]))} |"
        )
    return lines


def plot(rows: list[tuple], path: Path, title: str) -> bool:
    pts = [r for r in rows if r[0] is not None and r[3] is not None]
    if not pts:
        return False
    fig, ax = pyplot().subplots(figsize=(6, 4))
    bs = [r[0] for r in pts]
    ax.scatter(bs, [r[3] for r in pts], label="final train/loss", marker="o")
    te = [r for r in pts if r[4] is not None]
    ax.scatter([r[0] for r in te], [r[4] for r in te], label="final/test/loss", marker="s")
    lo, hi = min(bs), max(bs)
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="loss = b")
    ax.set_xscale("log")
    ax.set_xlabel("flood level b")
    finish_axes(ax, title)
    save_figure(fig, path)
    return True


def analyse(study: dict, study_dir: Path) -> str:
    study_dir = Path(study_dir)
    lines = [
        "Flooding holds the training loss near b. Below: each tuning trial of the flood "
        "arm (b, lr, val/acc, final train and test loss), and the confirmation runs' "
        "losses, mean ± 95% CI over the seeds.\n"
    ]
    for w, arms in workloads(study).items():
        tag = w or "main"
        lines.append(f"### {tag}\n")
        rows = trial_rows(study_dir, arms.get("flood", {}))
        lines += [
            "| b | lr | val/acc | final train/loss | final/test/loss | status |",
            "|---|---|---|---|---|---|",
        ]
        f = lambda x, d=4: "n/a" if x is None else f"{x:.{d}g}"
        for b, lr, v, tl, te, st in sorted(rows, key=lambda r: (r[0] is None, r[0] or 0)):
            lines.append(f"| {f(b)} | {f(lr)} | {f(v)} | {f(tl)} | {f(te)} | {st} |")
        lines += ["", "Confirmation runs:", ""] + confirm_table(study_dir, arms) + [""]
        png = f"flooding_b_{tag}.png"
        if plot(rows, study_dir / png, f"flood arm trials ({tag})"):
            lines.append(f"![losses against b ({tag})]({png})\n")
    return "\n".join(lines)
