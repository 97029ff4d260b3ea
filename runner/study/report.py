"""The study report: `write_report(study, out)` from study.json's content (runner/study/__init__.py
states the contract) into `out`: report.md, report.html (one self-contained file), summary.csv and
the PNGs. What each table and plot means, and how a verdict is reached: docs/study.md.

Run dirs in study.json are relative to the study dir; `out` is that dir (absolute paths work too).
With several workloads (`by_workload`) every table and plot is made per workload, and a
per-workload table and a Dolan-Moré performance profile compare the arms across them.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
from html import escape
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from runner import report_html as rh
from runner.fmt import fmean, fnum, fp
from runner.gitinfo import machine_line
from runner.runs import val_rows, val_rows_note
from runner.stats import describe, lower_is_better, performance_profile, profile_bootstrap
from runner.study.results import num as _ok
from runner.study.results import rows_of
from runner.study.verdicts import calibration_lines

DOCS = "docs/study.md"
MAIN = "main"  # the workload's name when the study has one


# -- reading study.json ---------------------------------------------------------------------


def workloads(study: dict, single: str | None = MAIN) -> dict:
    """workload name -> its arms (name -> arm dict), in study order; `single` names the one
    workload of a one-workload study (the recipes' analyses pass None: no heading for it)."""
    for key in ("by_workload", "workloads"):  # `workloads` may hold them too (the wording)
        nested = study.get(key)
        if (
            isinstance(nested, dict)
            and all(isinstance(v, dict) and "arms" in v for v in nested.values())
            and nested
        ):
            return {w: v.get("arms", {}) for w, v in nested.items()}
    return {single: study.get("arms", {})}


def higher_better(study: dict, key: str = "metric") -> bool:
    flag = {"metric": "higher_better", "select": "select_higher_better"}[key]
    if isinstance(study.get(flag), bool):
        return study[flag]
    return not lower_is_better(str(study.get(key, "")))


def run_path(out: Path, d: str) -> Path:
    """A run dir of study.json: relative to the study dir `out` (absolute paths work too)."""
    p = Path(d)
    return p if p.is_absolute() else Path(out) / p


# -- formatting -----------------------------------------------------------------------------


def fsig(x) -> str:
    return f"{x:+.4f}" if _ok(x) else "–"


def fval(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def params_text(params: dict | None) -> str:
    if not params:
        return "–"
    return ", ".join(f"{k}={fval(v)}" for k, v in params.items())


def chosen_text(a: dict) -> str:
    """The chosen values; with several replicates each one's ("r0: ...; r1: ...")."""
    reps = a.get("replicates") or []
    if len(reps) < 2:
        return params_text(a.get("chosen"))
    return "; ".join(f"r{x.get('replicate')}: {params_text(x.get('chosen'))}" for x in reps)


def final_ci(final: dict | None) -> str:
    """An arm's confirmation figure `mean ± half-width` from study.json's final {mean, ci95}."""
    final = final or {}
    lo, hi = (final.get("ci95") or [None, None])[:2]
    if not _ok(final.get("mean")):
        return "–"
    return fmean(final["mean"], (hi - lo) / 2 if _ok(lo) and _ok(hi) else None)


def diff_ci(diff: dict | None) -> str:
    if not diff or not _ok(diff.get("mean")):
        return "–"
    lo, hi = (diff.get("ci95") or [None, None])[:2]
    if _ok(lo) and _ok(hi) and lo != hi:
        return f"{fsig(diff['mean'])} [{fsig(lo)}, {fsig(hi)}]"
    return fsig(diff["mean"])


def failed_k_n(final: dict | None) -> str:
    final = final or {}
    k = final.get("failed") or 0
    return f"{k}/{(final.get('n') or 0) + k}"


def edge_text(edge: list | None) -> str:
    if not edge:
        return ""
    return "; ".join(
        f"{e.get('key')}={fval(e.get('value'))} at the {e.get('side')} edge of "
        f"{e.get('range')}: widen the range"
        for e in edge
    )


def ttt_text(t: dict | None) -> str:
    if not t:
        return "–"
    if not t.get("reached"):
        return f"not reached (0/{t.get('n', 0)})"
    secs = f", {t['mean_seconds']:.2f} s" if _ok(t.get("mean_seconds")) else ""
    return f"{t['mean_steps']:.0f} steps{secs} ({t['reached']}/{t['n']})"


def cost_text(c: dict | None) -> str:
    """The measured cost ratio; with its rounds' spread where recorded, "≈ 1×" when 1 lies
    within it (a one-pass trick timed on a shared CPU is not cheaper or dearer than that)."""
    if not c or not _ok(c.get("ratio")):
        return "–"
    lo, hi = c.get("ratio_range") or (None, None)
    if not (_ok(lo) and _ok(hi)):
        return f"{c['ratio']:.2f}×"
    if lo <= 1 <= hi:
        return f"≈ 1× ({lo:.2f}–{hi:.2f})"
    return f"{c['ratio']:.2f}× ({lo:.2f}–{hi:.2f})"


# -- the tables -----------------------------------------------------------------------------
# A report is a list of blocks, rendered once to markdown and once to HTML:
#   ("h", level, text)  ("p", text)  ("table", headers, rows)  ("img", file, title)  ("md", text)


def _own_arms(arms: dict) -> dict:
    """The study's own arms, without the equal-compute baselines it added (a comparison for
    their arm, made only where that arm cost more than the threshold)."""
    return {a: v for a, v in arms.items() if not v.get("equal_compute_of")}


def _main_arms(study: dict, arms: dict) -> list[str]:
    """The arms compared with the baseline (its Holm family), in study order."""
    return [a for a in _own_arms(arms) if a != study.get("baseline")]


def headline(study: dict, arms: dict) -> list[str]:
    base, metric = study.get("baseline"), study.get("metric", "")
    lines = []
    for name in _main_arms(study, arms):
        lines.append(_sentence(name, arms[name], base, metric))
        ec = arms[name].get("equal_compute")
        if ec:
            lines.append(
                _sentence(name, {**arms[name], **ec}, ec.get("vs"), metric)
                + " (same measured compute)"
            )
    for name, vs in versus_pairs(study, arms):
        lines.append(_sentence(name, {**arms[name], **vs}, vs.get("vs"), metric) + " (compare:)")
    return lines


def versus_pairs(study: dict, arms: dict) -> list[tuple[str, dict]]:
    """The study file's compare: pairs, (arm, its record against the other arm), in file order."""
    out = []
    for a, b in study.get("compare") or []:
        rec = next((x for x in arms.get(a, {}).get("versus") or [] if x.get("vs") == b), None)
        if rec:
            out.append((a, rec))
    return out


def _sentence(name: str, a: dict, base: str, metric: str) -> str:
    v, d = a.get("verdict") or "–", a.get("diff") or {}
    q = str(d.get("qualified") or "")
    note = q[len(v) :] if q.startswith(v) else ""  # " (provisional: ...; conditional ...)"
    return _plain_sentence(name, v, d, a, base, metric) + note


def _plain_sentence(name: str, v: str, d: dict, a: dict, base: str, metric: str) -> str:
    final = a.get("final") or {}
    n = f"n {final.get('n', 0)}" + (f", failed {failed_k_n(final)}" if final.get("failed") else "")
    stat = f"{diff_ci(d)} {metric} (p_holm {fp(d.get('p_holm'))}, {d.get('test') or '–'}, {n})"
    if v in ("better", "worse"):
        return f"**{name}** is {v} than {base}: {stat}"
    if v == "no significant difference":
        mde = (
            f"; this study detects about {fnum(d.get('mde'))} or more (80% power)"
            if _ok(d.get("mde"))
            else ""
        )
        return f"**{name}**: no significant difference from {base}: {stat}{mde}"
    return f"**{name}** against {base}: {v} ({n})"


def comparison_table(study: dict, arms: dict) -> tuple[list, list]:
    base, metric = study.get("baseline"), study.get("metric", "")
    has_ttt = any(a.get("target") for a in arms.values())
    head = [
        "arm",
        "chosen values",
        "edge warning",
        "n",
        f"{metric} (mean ± 95% CI)",
        f"diff vs {base} [95% CI]",
        "p",
        "p_holm",
        "test",
        "MDE",
        "failed k/n",
        "cost ×",
        "verdict",
    ]
    if has_ttt:
        t = next(a["target"] for a in arms.values() if a.get("target"))
        head.append(f"time to {t.get('key')} {fval(t.get('value'))}")
    rows = []
    for name in (
        [base]
        + _main_arms(study, arms)
        + [a for a in arms if a != base and arms[a].get("equal_compute_of")]
    ):
        if name not in arms:
            continue
        a = arms[name]
        d = a.get("diff") if name != base else None
        row = [
            name + (" (baseline)" if name == base else ""),
            chosen_text(a),
            edge_text(a.get("edge")),
            str((a.get("final") or {}).get("n", 0)),
            final_ci(a.get("final")),
            "baseline" if name == base else diff_ci(d),
            fp((d or {}).get("p")),
            fp((d or {}).get("p_holm")),
            (d or {}).get("test") or "–",
            fnum((d or {}).get("mde")),
            failed_k_n(a.get("final")),
            cost_text(a.get("cost")),
            "baseline" if name == base else (a.get("verdict") or "–"),
        ]
        if has_ttt:
            row.append(ttt_text(a.get("target")))
        rows.append(row)
    return head, rows


def dimensions_note(study: dict, arms: dict) -> str | None:
    """Where the arms were tuned over different numbers of keys with the same budget, says so:
    an arm with more keys had a sparser search, so its loss may be under-tuning, not harm."""
    names = [study.get("baseline")] + _main_arms(study, arms)
    dims = {a: len(arms[a].get("space") or {}) for a in names if a in arms}
    if len(set(dims.values())) < 2:
        return None
    b = study.get("budget")
    listed = ", ".join(f"{a} {n}" for a, n in dims.items())
    return (
        f"Tuned keys per arm, each with the same {b} trial{'' if b == 1 else 's'}: {listed}. "
        "An arm tuned over more keys had a sparser search at this budget: where it is worse, "
        "it may be under-tuned rather than harmed by its trick (its tuning curve and trials "
        "below show whether the budget was enough)."
    )


def cost_table(study: dict, arms: dict) -> tuple[list, list] | None:
    """The interleaved timing rounds behind the equal-compute arms: each arm's seconds per step
    in every round, the fastest (its cost), the ratio to the baseline's and the arm it added."""
    rows = []
    added = {v.get("equal_compute_of"): a for a, v in arms.items() if v.get("equal_compute_of")}
    for name, v in arms.items():
        c = v.get("cost") or {}
        if c.get("source") != "interleaved" or not c.get("rounds"):
            continue
        rounds = ", ".join(f"{1e3 * x:.3g}" for x in c["rounds"])
        sec = c.get("sec_per_step")
        rows.append(
            [
                name,
                f"{1e3 * sec:.3g}" if _ok(sec) else "–",
                rounds,
                cost_text(c),
                added.get(name, "–"),
            ]
        )
    if not rows:
        return None
    steps = next((v["cost"].get("round_steps") for v in arms.values() if v.get("cost")), None)
    head = ["arm", "ms per step (fastest round)", f"rounds, ms per step ({steps} steps each)"]
    return head + ["cost ×", "equal-compute arm"], rows


def _diff_cells(d: dict) -> list[str]:
    """diff [95% CI], p, p_holm, test and MDE of one comparison (a `diff` record)."""
    mde = fnum(d.get("mde"))
    return [diff_ci(d), fp(d.get("p")), fp(d.get("p_holm")), d.get("test") or "–", mde]


def equal_compute_table(study: dict, arms: dict) -> tuple[list, list] | None:
    rows = []
    for name in _main_arms(study, arms):
        ec = arms[name].get("equal_compute")
        if not ec:
            continue
        d = ec.get("diff") or {}
        vs = arms.get(ec.get("vs"), {})
        rows.append(
            [
                name,
                ec.get("vs", "–"),
                final_ci(vs.get("final")),
                *_diff_cells(d),
                ec.get("verdict") or "–",
            ]
        )
    if not rows:
        return None
    return (
        [
            "arm",
            "vs (baseline, same compute)",
            "its mean ± 95% CI",
            "diff [95% CI]",
            "p",
            "p_holm",
            "test",
            "MDE",
            "verdict",
        ],
        rows,
    )


def versus_table(study: dict, arms: dict) -> tuple[list, list] | None:
    rows = []
    for name, vs in versus_pairs(study, arms):
        d, other = vs.get("diff") or {}, arms.get(vs.get("vs"), {})
        rows.append(
            [
                name,
                vs.get("vs", "–"),
                final_ci(arms[name].get("final")),
                final_ci(other.get("final")),
                *_diff_cells(d),
                vs.get("verdict") or "–",
            ]
        )
    if not rows:
        return None
    head = ["arm", "vs (arm)", "its mean ± 95% CI", "vs's mean ± 95% CI", "diff [95% CI]"]
    return head + ["p", "p_holm", "test", "MDE", "verdict"], rows


def tuning_table(study: dict, arms: dict) -> tuple[list, list]:
    keys = []
    for a in arms.values():
        for t in a.get("trials", []):
            keys += [k for k in (t.get("params") or {}) if k not in keys]
    head = [
        "arm",
        "trial",
        *keys,
        f"{study.get('select', 'select')} (mean over tune seeds)",
        "status",
        "chosen",
        "note",
    ]
    rows = []
    for name, a in arms.items():
        for i, t in enumerate(a.get("trials", [])):
            idx = t.get("index", i)
            p = t.get("params") or {}
            err = "; ".join(t.get("errors") or [])
            # several replicates: "r1/03", the chosen mark from that replicate's own pick
            rep = t.get("replicate")
            reps = a.get("replicates") or []
            pick = reps[rep].get("chosen_trial") if rep is not None else a.get("chosen_trial")
            rows.append(
                [
                    name,
                    f"r{rep}/{idx:02d}" if rep is not None else str(idx),
                    *[fval(p[k]) if k in p else "" for k in keys],
                    fnum(t.get("select_value")),
                    t.get("status", "–"),
                    "✓" if idx == pick else "",
                    err if len(err) <= 120 else err[:119] + "…",
                ]
            )
    return head, rows


def workload_table(study: dict, wl: dict) -> tuple[list, list]:
    names = []
    for arms in wl.values():
        names += [a for a in arms if a not in names]
    rows = []
    for name in names:
        cells = []
        for arms in wl.values():
            a = arms.get(name)
            if a is None:
                cells.append("")
                continue
            v = "baseline" if name == study.get("baseline") else (a.get("verdict") or "–")
            cells.append(f"{final_ci(a.get('final'))} · {v}")
        rows.append([name, *cells])
    return ["arm", *[f"{w}: {study.get('metric', '')} · verdict" for w in wl]], rows


PROFILE_TAUS = (1.0, 1.01, 1.02, 1.05, 1.1)


def profile_table(study: dict, wl: dict) -> tuple[list, list]:
    prof = performance_profile(profile_scores(wl), list(PROFILE_TAUS), higher_better(study))
    return (
        ["arm", *[f"τ = {t:g}" for t in PROFILE_TAUS]],
        [[a, *[f"{x:.2f}" for x in fr]] for a, fr in prof.items()],
    )


BOOT_REPS = 1000


def profile_boot(study: dict, wl: dict) -> dict[str, list[list[float]]]:
    """The profile's seed bootstrap (runner.stats.profile_bootstrap) over each own arm's
    confirmation values, paired by seed within a workload."""

    def by_seed(final: dict | None) -> dict:
        final = final or {}
        return dict(zip(final.get("seeds") or [], final.get("values") or []))

    samples = {
        w: {a: by_seed(v.get("final")) for a, v in _own_arms(arms).items()}
        for w, arms in wl.items()
    }
    return profile_bootstrap(samples, higher_better(study), reps=BOOT_REPS)


def profile_band(boot: dict, taus: list[float]) -> dict[str, tuple[list, list]]:
    """arm -> (low, high) per tau: the 2.5th and 97.5th percentile of the fraction of workloads
    within tau across the resamples (values the fraction takes: it moves in steps of 1/W)."""
    t = np.asarray(taus, dtype=float)
    out = {}
    for a, reps in boot.items():
        r = np.asarray(reps, dtype=float)  # resamples x workloads
        frac = (r[:, :, None] <= t[None, None, :]).mean(axis=1)  # resamples x taus
        lo = np.quantile(frac, 0.025, axis=0, method="lower")
        hi = np.quantile(frac, 0.975, axis=0, method="higher")
        out[a] = (lo.tolist(), hi.tolist())
    return out


def profile_band_table(boot: dict) -> tuple[list, list]:
    band = profile_band(boot, list(PROFILE_TAUS))
    return (
        ["arm", *[f"τ = {t:g}" for t in PROFILE_TAUS]],
        [[a, *[f"{x:.2f}–{y:.2f}" for x, y in zip(*band[a])]] for a in sorted(band)],
    )


def profile_scores(wl: dict) -> dict[str, dict[str, float]]:
    """workload -> arm -> mean final metric, over the study's own arms: an equal-compute
    baseline exists only on the workloads where its arm cost more than the threshold, so
    counted as a contender, its absence would read as a failure."""
    return {
        w: {a: (v.get("final") or {}).get("mean") for a, v in _own_arms(arms).items()}
        for w, arms in wl.items()
    }


# -- the plots ------------------------------------------------------------------------------


def pyplot():
    """matplotlib's pyplot drawing to files (Agg), whatever backend the caller had."""
    matplotlib.use("Agg", force=True)
    return plt


def finish_axes(ax, title: str) -> None:
    """The title, a light grid and a small legend: the look the report's plots share."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_figure(fig, path: Path) -> None:
    """Laid out, written at 110 dpi (every report and recipe figure) and closed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def _colors(names: list[str]) -> dict:
    cmap = pyplot().get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def trial_numbers(arm: dict) -> list[int]:
    """The trials' numbers as the tuning table shows them (their index, from 0)."""
    return [t.get("index", i) for i, t in enumerate(arm.get("trials", []))]


def best_so_far(values: list, higher: bool) -> list:
    """The running best of the trial scores (None: a failed trial, never the best)."""
    out, best = [], None
    for v in values:
        if _ok(v) and (best is None or (v > best if higher else v < best)):
            best = v
        out.append(best)
    return out


def plot_tuning(study: dict, arms: dict, path: Path, title: str) -> bool:
    plt, higher = pyplot(), higher_better(study, "select")
    colors = _colors(list(arms))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for j, (name, a) in enumerate(arms.items()):
        vals = [t.get("select_value") for t in a.get("trials", [])]
        if not any(_ok(v) for v in vals):
            continue
        drawn = True
        x = trial_numbers(a)
        ls, marker = rh.LINESTYLES[j % len(rh.LINESTYLES)]
        ax.step(
            x,
            [b if b is not None else math.nan for b in best_so_far(vals, higher)],
            where="post",
            color=colors[name],
            label=name,
            lw=1.8,
            ls=ls,
            marker=marker,
            ms=4,
        )
        ax.scatter(
            [i for i, v in zip(x, vals) if _ok(v)],
            [v for v in vals if _ok(v)],
            color=colors[name],
            alpha=0.35,
            s=14,
        )
    if not drawn:
        plt.close(fig)
        return False
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (as in the tuning table)")
    ax.set_ylabel(f"best {study.get('select')} so far")
    rh.clip_axis(ax, str(study.get("select")))
    finish_axes(ax, title)
    save_figure(fig, path)
    return True


def plot_final(study: dict, arms: dict, path: Path, title: str) -> bool:
    plt = pyplot()
    names = [a for a in arms if _ok((arms[a].get("final") or {}).get("mean"))]
    if not names:
        return False
    colors = _colors(list(arms))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.6))
    for i, name in enumerate(reversed(names)):
        f = arms[name]["final"]
        lo, hi = (f.get("ci95") or [None, None])[:2]
        err = (
            [[max(0.0, f["mean"] - lo)], [max(0.0, hi - f["mean"])]]
            if _ok(lo) and _ok(hi)
            else None
        )
        ax.errorbar(f["mean"], i, xerr=err, fmt="o", color=colors[name], capsize=4, ms=7)
        vals = [v for v in f.get("values") or [] if _ok(v)]
        ax.scatter(vals, [i] * len(vals), color=colors[name], alpha=0.35, s=14)
    base = (arms.get(study.get("baseline"), {}).get("final") or {}).get("mean")
    if _ok(base):
        ax.axvline(base, color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(list(reversed(names)))
    ax.set_xlabel(f"{study.get('metric')} (mean, 95% CI; dots: seeds; dashed: baseline)")
    rh.clip_axis(ax, str(study.get("metric")), "x")
    ax.set_title(title)
    save_figure(fig, path)
    return True


def curve_key(study: dict) -> str:
    return re.sub(r"^(best|final)/", "", str(study.get("select", "val/acc")))


def band(run_dirs: list[Path], key: str):
    """steps, mean, low, high of `key` across runs (95% t CI where >= 2 runs have the step)."""
    by_step: dict[int, list[float]] = {}
    for d in run_dirs:
        for r in rows_of(d):
            if _ok(r.get(key)) and _ok(r.get("step")):
                by_step.setdefault(int(r["step"]), []).append(float(r[key]))
    steps = sorted(by_step)
    mean, lo, hi = [], [], []
    for s in steps:
        x = describe(by_step[s])
        ok = _ok(x["ci95"])
        mean.append(x["mean"])
        lo.append(x["ci_low"] if ok else x["mean"])
        hi.append(x["ci_high"] if ok else x["mean"])
    return steps, mean, lo, hi


def plot_curves(study: dict, arms: dict, out: Path, path: Path, title: str) -> bool:
    plt, key = pyplot(), curve_key(study)
    colors = _colors(list(arms))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for j, (name, a) in enumerate(arms.items()):
        dirs = [run_path(out, d) for d in (a.get("final") or {}).get("run_dirs") or []]
        steps, mean, lo, hi = band(dirs, key)
        if not steps:
            continue
        drawn = True
        ls, marker = rh.LINESTYLES[j % len(rh.LINESTYLES)]
        every = max(1, len(steps) // 12)
        ax.plot(
            steps,
            mean,
            color=colors[name],
            label=name,
            lw=1.6,
            ls=ls,
            marker=marker,
            ms=3,
            markevery=every,
        )
        ax.fill_between(steps, lo, hi, color=colors[name], alpha=0.2, lw=0)
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    rh.clip_axis(ax, key)
    finish_axes(ax, title)
    save_figure(fig, path)
    return True


def profile_taus(scores: dict, higher: bool, n: int = 200) -> list[float]:
    """tau from 1 to a little past the largest finite ratio to the best (at least 1.05)."""
    worst = 1.0
    for per in scores.values():
        ok = [v for v in per.values() if _ok(v) and v > 0]
        if ok:
            best = max(ok) if higher else min(ok)
            worst = max(worst, *((best / v) if higher else (v / best) for v in ok))
    top = max(1.05, 1 + (worst - 1) * 1.1)
    return [1 + (top - 1) * i / (n - 1) for i in range(n)]


def plot_profile(study: dict, wl: dict, path: Path, boot: dict | None = None) -> dict:
    """The performance profile of the final metric's means across workloads, with the seed
    bootstrap's 95% band where `boot` is given; returns it."""
    plt, higher = pyplot(), higher_better(study)
    scores = profile_scores(wl)
    taus = profile_taus(scores, higher)
    prof = performance_profile(scores, taus, higher)
    band = profile_band(boot, taus) if boot else {}
    colors = _colors(list(prof))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, fr in prof.items():
        ax.step(taus, fr, where="post", color=colors[name], label=name, lw=1.8)
        if name in band:
            lo, hi = band[name]
            ax.fill_between(taus, lo, hi, step="post", color=colors[name], alpha=0.12, lw=0)
    ax.set_xlabel(f"τ (ratio to the best arm's {study.get('metric')} on a workload)")
    ax.set_ylabel("fraction of workloads within τ of the best")
    ax.set_ylim(-0.03, 1.03)
    finish_axes(ax, f"performance profile over {len(wl)} workloads")
    save_figure(fig, path)
    return {"taus": taus, "profile": prof}


# -- the same plots as interactive SVG, for report.html (runner.report_html) ------------------


def _hex(names: list[str]) -> dict:
    return {n: rh.COLORS[i % len(rh.COLORS)] for i, n in enumerate(names)}


def _or_nan(x) -> float:
    return float(x) if _ok(x) else math.nan


def svg_final(study: dict, arms: dict) -> tuple[str, list] | None:
    """plot_final's figure: each arm's mean and 95% CI, its seeds, the baseline dashed."""
    names = [a for a in arms if _ok((arms[a].get("final") or {}).get("mean"))]
    if not names:
        return None
    color, metric = _hex(list(arms)), str(study.get("metric"))
    items = []
    for name in names:
        f = arms[name]["final"]
        lo, hi = (f.get("ci95") or [None, None])[:2]
        items.append(
            {
                "label": name,
                "n": f.get("n", 0),
                "mean": f["mean"],
                "low": _or_nan(lo),
                "high": _or_nan(hi),
                "values": [v for v in f.get("values") or [] if _ok(v)],
                "color": color[name],
            }
        )
    base = (arms.get(study.get("baseline"), {}).get("final") or {}).get("mean")
    xlabel = f"{metric} (mean, 95% CI; small dots: seeds; dashed: baseline)"
    svg = rh.interval_plot(
        items, xlabel, base if _ok(base) else None, bounds=rh.metric_bounds(metric)
    )
    return svg, []


def _svg_curves(series: list[dict], xlabel: str, ylabel: str) -> tuple[str, list] | None:
    if not series:
        return None
    svg = rh.curve_plot(series, xlabel, ylabel, bounds=rh.metric_bounds(ylabel))
    return svg, [(s["label"], s["color"]) for s in series]


def svg_tuning(study: dict, arms: dict) -> tuple[str, list] | None:
    """plot_tuning's figure: the best select value so far, trials numbered as in the table."""
    color, higher = _hex(list(arms)), higher_better(study, "select")
    n = len(study.get("tune_seeds") or [None])
    series = []
    for name, a in arms.items():
        vals = [t.get("select_value") for t in a.get("trials", [])]
        pts = [(x, b) for x, b in zip(trial_numbers(a), best_so_far(vals, higher)) if _ok(b)]
        if pts:
            ys = [b for _, b in pts]
            series.append(
                {
                    "label": name,
                    "color": color[name],
                    "x": [x for x, _ in pts],
                    "mean": ys,
                    "low": ys,
                    "high": ys,
                    "n": [n] * len(pts),
                }
            )
    return _svg_curves(series, "trial (as in the tuning table)", str(study.get("select")))


def svg_curves(study: dict, arms: dict, out: Path) -> tuple[str, list] | None:
    """plot_curves's figure: the confirmation runs' curve, mean with a 95% CI band."""
    color, key = _hex(list(arms)), curve_key(study)
    series = []
    for name, a in arms.items():
        dirs = [run_path(out, d) for d in (a.get("final") or {}).get("run_dirs") or []]
        steps, mean, lo, hi = band(dirs, key)
        if steps:
            counts: dict[int, int] = {}
            for d in dirs:
                for st in {int(r["step"]) for r in rows_of(d) if _ok(r.get(key))}:
                    counts[st] = counts.get(st, 0) + 1
            series.append(
                {
                    "label": name,
                    "color": color[name],
                    "x": steps,
                    "mean": mean,
                    "low": lo,
                    "high": hi,
                    "n": [counts.get(st, 1) for st in steps],
                }
            )
    return _svg_curves(series, "step", key)


def svg_profile(study: dict, wl: dict, made: dict, boot: dict) -> tuple[str, list] | None:
    """plot_profile's figure (every 5th tau: the curve, not 200 hover points per arm)."""
    taus, color = made["taus"], _hex(list(made["profile"]))
    band_ = profile_band(boot, taus) if boot else {}
    keep = sorted(set(range(0, len(taus), 5)) | {len(taus) - 1})
    series = []
    for name, fr in made["profile"].items():
        lo, hi = band_.get(name, (fr, fr))
        series.append(
            {
                "label": name,
                "color": color[name],
                "x": [taus[i] for i in keep],
                "mean": [fr[i] for i in keep],
                "low": [lo[i] for i in keep],
                "high": [hi[i] for i in keep],
                "n": [len(wl)] * len(keep),
            }
        )
    return _svg_curves(series, "τ (ratio to the best arm)", "fraction of workloads within τ")


def ties_note(study: dict, arms: dict) -> str | None:
    """Arms whose best trials tie on the selection metric, and the rule that chose among them
    (runner.study.results.choose: the earlier trial)."""
    parts = []
    for name, a in _own_arms(arms).items():
        ok = [t for t in a.get("trials", []) if _ok(t.get("select_value"))]
        if len(ok) < 2:
            continue
        pick = max if higher_better(study, "select") else min
        best = pick(t["select_value"] for t in ok)
        tied = [str(t.get("index")) for t in ok if t["select_value"] == best]
        if len(tied) > 1:
            parts.append(f"{name}: trials {', '.join(tied)} at {fnum(best)}")
    if not parts:
        return None
    return (
        f"Ties on {study.get('select')}: {'; '.join(parts)}. A tie goes to the earlier trial "
        "(the lowest number): the choice among them is by order, not by the metric."
    )


def val_split_note(study: dict, wl: dict, out: Path) -> str | None:
    """A val split too small to select on, read off the confirmation runs' val accuracies
    (runner.runs.val_rows; nothing when the run dirs are not there)."""
    key = curve_key(study)
    if not key.endswith("acc"):
        return None
    values = [
        r.get(key)
        for arms in wl.values()
        for a in arms.values()
        for d in (a.get("final") or {}).get("run_dirs") or []
        for r in rows_of(run_path(out, d))
    ]
    return val_rows_note(val_rows(values), key)


# -- the document ---------------------------------------------------------------------------


def _slug(w: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", w)


def _docs_link(out: Path) -> str:
    """A link to docs/study.md from a study dir inside the source tree; its name otherwise."""
    root = Path(__file__).resolve().parents[2]
    docs = root / DOCS
    if docs.is_file() and out.resolve().is_relative_to(root):
        return f"[{DOCS}]({os.path.relpath(docs, out.resolve())})"
    return f"{DOCS} in the tricks source tree"


def how_to_read(study: dict, out: Path) -> str:
    return (
        f"Every arm was tuned with the same budget ({study.get('budget')} trial(s), drawn "
        f"quasi-randomly from its search space, the shared keys at the same points) and "
        f"scored on {study.get('select')} (mean over the tune seeds); the best trial of "
        f"each arm ran again on fresh seeds and is reported on {study.get('metric')}. "
        "diff: arm − baseline, paired t when the seeds match (Welch otherwise); p_holm: "
        "Holm-adjusted across the arms compared with the baseline, and the verdict is read "
        "on p_holm < 0.05, never from zero spread. MDE: the smallest true difference the "
        "test finds 4 times in 5 at this n and spread: 'no significant difference' with a "
        "large MDE means the study was too small to tell. failed k/n: confirmation runs "
        "that failed (never averaged). An edge warning: the chosen value lies in the outer "
        "5% of its range, so the best may lie outside it. cost ×: measured seconds per step "
        f"over the baseline's. More: {_docs_link(out)}."
    )


def _intro(study: dict) -> list:
    seeds = " ".join(map(str, study.get("seeds") or []))
    tune = " ".join(map(str, study.get("tune_seeds") or []))
    blocks = [("h", 1, f"tricks study: {study.get('name') or study.get('study_file') or ''}")]
    if study.get("description"):
        blocks.append(("p", study["description"]))
    b = study.get("budget")
    blocks.append(
        (
            "p",
            f"Baseline {study.get('baseline')}; budget {b} trial{'' if b == 1 else 's'}"
            f" per arm on tune seeds [{tune}]; chosen on {study.get('select')}; "
            f"confirmed on seeds [{seeds}], reported on {study.get('metric')}. " + _commits(study),
        )
    )
    return blocks + _pieces(study)


def _commit_label(rec: dict) -> str:
    """'abc1234' or 'abc1234 (dirty)' from a record's commit and dirty keys."""
    return str(rec.get("commit") or "unknown")[:12] + (" (dirty)" if rec.get("dirty") else "")


def _commits(study: dict) -> str:
    """The commit line. A study started more than once on its DIR (resumed, or run in pieces)
    names every start's commit and time, so a reader sees the runs come from more than one tree
    (each start runs only what the earlier ones left; each run's summary.json names its own)."""
    inv = study.get("invocations") or []
    machine = machine_line(study.get("machine"))
    if len(inv) < 2:
        return f"Commit {_commit_label(study)}; machine: {machine}."
    parts = []
    for i in inv:
        c = _commit_label(i)
        m = machine_line(i["machine"]) if i.get("machine") else machine
        parts.append(f"{c} ({i.get('started') or 'unknown'}" + (f", {m})" if m != machine else ")"))
    return (
        f"Started {len(inv)} times on this DIR, each start running only the runs the earlier "
        f"ones left, at commits {', '.join(parts)}; machine: {machine}."
    )


def _pieces(study: dict) -> list:
    """A study run in pieces (`--workloads`): which commit made each workload's record, and
    which workloads are not run yet."""
    made: dict[tuple, list] = {}
    for w, v in (study.get("by_workload") or {}).items():
        r = v.get("run") or {}
        key = (_commit_label(r), r.get("finished"), machine_line(r.get("machine")))
        made.setdefault(key, []).append(w)
    missing = study.get("workloads_not_run") or []
    if len(made) < 2 and not missing:
        return []
    parts = [
        f"{', '.join(ws)} at commit {c}, finished {f or 'unknown'} on {m}"
        for (c, f, m), ws in made.items()
    ]
    text = "Run in pieces (`--workloads`): " + "; ".join(parts) + "."
    if missing:
        text += (
            f" Not run yet: {', '.join(missing)} (`tricks study {study.get('study_file', 'FILE')} "
            f"--workloads {','.join(missing)}` on this DIR); the comparisons across workloads "
            f"below cover only the {sum(map(len, made.values()))} run so far."
        )
    return [("p", text)]


def _workload_blocks(study: dict, w: str, arms: dict, out: Path, several: bool) -> tuple:
    lvl, sfx = (3, f"_{_slug(w)}") if several else (2, "")
    tag = f" ({w})" if several else ""
    blocks = [("h", 2, f"Workload {w}")] if several else []
    blocks += [
        ("h", lvl, f"Comparison with the baseline{tag}"),
        ("table", *comparison_table(study, arms)),
    ]
    if dims := dimensions_note(study, arms):
        blocks.append(("p", dims))
    optional = (
        (
            equal_compute_table(study, arms),
            f"Against the baseline given the same measured compute{tag}",
            "Each costly arm against a baseline given its measured compute (more "
            "steps), tuned with the same budget; these comparisons are their own "
            "Holm family.",
        ),
        (
            versus_table(study, arms),
            f"Arm against arm{tag}",
            "The study file's `compare:` pairs, each arm at its own chosen point, paired "
            "by seed; these comparisons are their own Holm family.",
        ),
        (
            cost_table(study, arms),
            f"Measured cost{tag}",
            "Timed before tuning in one process, the arms interleaved round by round; an "
            "arm's cost is its fastest round (a load only adds time); above "
            "1.1× the baseline it gets an equal-compute baseline.",
        ),
    )
    for table, title, note in optional:
        if table:
            blocks += [("h", lvl, title), ("p", note), ("table", *table)]
    plots = []
    for name, fn, title, svg in (
        (
            f"final{sfx}.png",
            lambda p, t: plot_final(study, arms, p, t),
            f"{study.get('metric')} per arm{tag}: mean and 95% CI over the seeds",
            lambda: svg_final(study, arms),
        ),
        (
            f"tuning{sfx}.png",
            lambda p, t: plot_tuning(study, arms, p, t),
            f"tuning curves{tag}: best {study.get('select')} so far",
            lambda: svg_tuning(study, arms),
        ),
        (
            f"curves{sfx}.png",
            lambda p, t: plot_curves(study, arms, out, p, t),
            f"confirmation runs{tag}: {curve_key(study)}, mean with a 95% CI band",
            lambda: svg_curves(study, arms, out),
        ),
    ):
        # a plot that needs the run dirs (curves) keeps the one drawn when they were there: a
        # committed study dir holds no runs/, and a piece run later has only its own
        if fn(out / name, title) or (name.startswith("curves") and (out / name).is_file()):
            plots.append(("img", name, title, svg()))  # the SVG for report.html, else the PNG
    blocks += [("h", lvl, f"Plots{tag}"), *plots] if plots else []
    blocks += [("h", lvl, f"Tuning trials{tag}"), ("table", *tuning_table(study, arms))]
    if ties := ties_note(study, arms):
        blocks.append(("p", ties))
    return blocks, [b[1] for b in plots]


ONE_TUNING_NOTE = (
    "One replicate: each arm was tuned once, so every verdict is conditional on that one "
    "tuning (its choice of config and its split); replicates: R > 1 puts the tuning's own "
    "noise into the test (docs/study.md, Replicated tuning)."
)


def _calibration_blocks(study: dict) -> list:
    """The A/A arm first: the study's own calibration (a better/worse flags every verdict)."""
    lines = calibration_lines(study)
    if not lines:
        return []
    return [
        ("h", 2, "Calibration: the A/A arm"),
        (
            "p",
            "The A/A arm is the baseline along another random path of each seed "
            "(trainer.stream_offset=1), tuned and confirmed like every arm, outside the primary "
            "family: its true difference is 0, so a better/worse here says the study's verdicts "
            "sit inside its own noise.",
        ),
        ("ul", lines),
    ]


def _g(x) -> str:
    return f"{x:.3g}" if _ok(x) else "–"


def _replicate_blocks(study: dict, wl: dict) -> list:
    """Per comparison: R, S, the method, the two variance components (between replicates: the
    tuning's choice and split; within: the seeds), each replicate's mean difference."""
    rows = []
    for w, arms in wl.items():
        for a, rec in arms.items():
            for vs, d in [(study.get("baseline"), rec.get("diff"))] + [
                (e.get("vs"), e.get("diff")) for e in [rec.get("equal_compute") or {}]
            ]:
                if not d or "var_within" not in d:
                    continue
                rows.append(
                    [w, f"{a} vs {vs}", str(d.get("replicates")), str(d.get("seeds_per_replicate"))]
                    + [d.get("method") or "", _g(d.get("var_between")), _g(d.get("var_within"))]
                    + [" ".join(fsig(x) for x in d.get("replicate_diffs") or []) or "–"]
                    + [str(d.get("family") or ""), d.get("qualified") or ""]
                )
    if not rows:
        return []
    head = ["workload", "comparison", "R", "S", "method", "var between", "var within"]
    head += ["replicate diffs", "family", "verdict"]
    return [
        ("h", 2, "Replicates and variance components"),
        (
            "p",
            f"replicates {study.get('replicates')} x {study.get('seeds_per_replicate')} seeds; "
            + (
                "each replicate its own split ("
                + ", ".join(f"{w}: dataset.{k}" for w, k in (study.get("split") or {}).items())
                + " + r)"
                if study.get("vary_data")
                else "the same split in every replicate"
            )
            + ". var between: the variance of the difference between replicates beyond the "
            "seeds' (the tuning's choice, the split; unknown with one replicate); var within: "
            "of one seed's difference inside a replicate.",
        ),
        ("table", head, rows),
    ]


def _failed_blocks(wl: dict) -> list:
    rows = [
        [w, arm, f.get("run_dir", ""), str(f.get("error", ""))[:200]]
        for w, arms in wl.items()
        for arm, a in arms.items()
        for f in (a.get("final") or {}).get("failed_runs") or []
    ]
    if not rows:
        return []
    return [
        ("h", 2, "Failed confirmation runs (not averaged)"),
        ("table", ["workload", "arm", "run", "error"], rows),
    ]


def document(study: dict, out: Path, analysis: str | None = None) -> tuple[list, list[str]]:
    """The report's blocks and the PNGs written for them."""
    wl = workloads(study)
    # a study of several workloads run in pieces keeps their headings and PNG names from the first
    several = len(wl) > 1 or len(study.get("workloads") or []) > 1
    blocks = _intro(study) + _calibration_blocks(study) + [("h", 2, "Verdicts")]
    if study.get("replicates", 1) == 1 and "replicates" in study:
        blocks.append(("p", ONE_TUNING_NOTE))
    for w, arms in wl.items():
        lines = headline(study, arms)
        if several and lines:
            blocks.append(("p", f"**{w}**"))
        # a list like any other in report.md; in report.html marked as the verdicts
        blocks.append(("ul", lines or ["no arm to compare with the baseline"], "verdicts"))
    if small := val_split_note(study, wl, out):
        blocks.append(("p", small))
    pngs = []
    for w, arms in wl.items():
        b, p = _workload_blocks(study, w, arms, out, several)
        blocks += b
        pngs += p
    if several:
        blocks += [("h", 2, "Across workloads"), ("table", *workload_table(study, wl))]
        boot = profile_boot(study, wl)
        made = plot_profile(study, wl, out / "profile.png", boot)
        blocks += [
            (
                "p",
                "Performance profile (Dolan-Moré, as AlgoPerf plots it): for each τ, "
                "the fraction of workloads on which an arm's mean "
                f"{study.get('metric')} is within a factor τ of the best arm's there "
                "(τ = 1: the best).",
            ),
            ("table", *profile_table(study, wl)),
            (
                "p",
                f"How much of that order is seed noise: {BOOT_REPS:,} resamples of each "
                "workload's confirmation seeds (drawn with replacement, the same draw for "
                "every arm), the profile re-made from each; below, the 95% interval of each "
                "fraction (the band in the plot). An interval that spans from few workloads to "
                "all: at this n the seeds alone can reorder the arms.",
            ),
            ("table", *profile_band_table(boot)),
            (
                "img",
                "profile.png",
                "performance profile across workloads (95% seed band)",
                svg_profile(study, wl, made, boot),
            ),
        ]
        pngs.append("profile.png")
    blocks += _replicate_blocks(study, wl)
    blocks += _failed_blocks(wl)
    blocks += [("h", 2, "How to read this"), ("p", how_to_read(study, out))]
    if analysis:
        blocks += [("h", 2, "Analysis"), ("md", analysis)]
    return blocks, pngs


# -- rendering ------------------------------------------------------------------------------


def _md_cell(c: str) -> str:
    return str(c).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list) -> str:
    lines = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            lines += ["#" * b[1] + " " + b[2], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "ul":
            lines += [f"- {x}" for x in b[1]] + [""]
        elif kind == "table":
            head, rows = b[1], b[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{b[2]}]({b[1]})", ""]
        elif kind == "md":
            lines += [b[1].rstrip(), ""]
    return "\n".join(lines)


def _inline(text: str, escape) -> str:
    """Markdown's **bold**, `code` and [text](link) in one line of HTML."""
    t = escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', t)


def _img_html(out: Path, name: str, title: str, escape) -> str:
    f = out / name
    if not f.is_file():
        return f"<p>(missing image {escape(name)})</p>"
    data = base64.b64encode(f.read_bytes()).decode()
    return (
        f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def _table_html(head: list, rows: list, escape) -> str:
    verdict = head.index("verdict") if "verdict" in head else -1
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            cls = (
                f' class="v-{str(c).split()[0]}"'
                if j == verdict and c
                else (' class="w"' if len(str(c)) > 40 else "")
            )  # long text wraps; figures never
            cells.append(f"<td{cls}>{_inline(str(c), escape)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="box"><table><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(body)
        + "</table></div>"
    )


def md_to_html(text: str, out: Path, escape) -> str:
    """The small markdown of an analysis: headings, images (embedded), pipe tables, lists,
    paragraphs."""
    html, table = [], []
    for line in text.splitlines() + [""]:
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
            continue
        if table:
            html.append(_table_html(table[0], table[1:], escape))
            table = []
        m = re.fullmatch(r"!\[([^\]]*)\]\(([^)\s]+)\)", s)
        if m:
            html.append(_img_html(out, m.group(2), m.group(1), escape))
        elif s.startswith("#"):
            level = min(len(s) - len(s.lstrip("#")) + 1, 6)
            html.append(f"<h{level}>{_inline(s.lstrip('#').strip(), escape)}</h{level}>")
        elif s.startswith(("- ", "* ")):
            html.append(f"<ul><li>{_inline(s[2:], escape)}</li></ul>")
        elif s:
            html.append(f"<p>{_inline(s, escape)}</p>")
    return "\n".join(html)


def to_html(blocks: list, out: Path, title: str) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append(f"<h{b[1]}>{escape(b[2])}</h{b[1]}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(b[1], escape)}</p>")
        elif kind == "ul":
            cls = f' class="{b[2]}"' if len(b) > 2 else ""
            items = "".join(f"<li>{_inline(x, escape)}</li>" for x in b[1])
            parts.append(f"<ul{cls}>{items}</ul>")
        elif kind == "table":
            parts.append(_table_html(b[1], b[2], escape))
        elif kind == "img" and len(b) > 3 and b[3]:
            parts.append(rh.figure(b[3][0], b[2], b[3][1]))
        elif kind == "img":
            parts.append(_img_html(out, b[1], b[2], escape))
        elif kind == "md":
            parts.append(md_to_html(b[1], out, escape))
    return rh.page(title, "\n".join(parts))


CSV_COLS = [
    "workload",
    "arm",
    "baseline",
    "equal_compute_of",
    "chosen",
    "edge",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "failed",
    "seeds",
    "values",
    "diff",
    "diff_low",
    "diff_high",
    "p",
    "p_holm",
    "test",
    "mde",
    "verdict",
    "ec_vs",
    "ec_diff",
    "ec_p_holm",
    "ec_verdict",
    "sec_per_step",
    "cost_ratio",
    "target_reached",
    "target_mean_steps",
    "target_mean_seconds",
]


def csv_rows(study: dict) -> list[dict]:
    rows = []
    for w, arms in workloads(study).items():
        for name, a in arms.items():
            f, d = a.get("final") or {}, a.get("diff") or {}
            ec, c, t = a.get("equal_compute") or {}, a.get("cost") or {}, a.get("target") or {}
            lo, hi = (f.get("ci95") or [None, None])[:2]
            dlo, dhi = (d.get("ci95") or [None, None])[:2]
            is_base = name == study.get("baseline")
            rows.append(
                {
                    "workload": w,
                    "arm": name,
                    "baseline": is_base,
                    "equal_compute_of": a.get("equal_compute_of"),
                    "chosen": json.dumps(a.get("chosen")),
                    "edge": edge_text(a.get("edge")),
                    "n": f.get("n"),
                    "mean": f.get("mean"),
                    "ci_low": lo,
                    "ci_high": hi,
                    "failed": f.get("failed"),
                    "seeds": " ".join(map(str, f.get("seeds") or [])),
                    "values": " ".join(map(str, f.get("values") or [])),
                    "diff": d.get("mean"),
                    "diff_low": dlo,
                    "diff_high": dhi,
                    "p": d.get("p"),
                    "p_holm": d.get("p_holm"),
                    "test": d.get("test"),
                    "mde": d.get("mde"),
                    "verdict": "baseline" if is_base else a.get("verdict"),
                    "ec_vs": ec.get("vs"),
                    "ec_diff": (ec.get("diff") or {}).get("mean"),
                    "ec_p_holm": (ec.get("diff") or {}).get("p_holm"),
                    "ec_verdict": ec.get("verdict"),
                    "sec_per_step": c.get("sec_per_step"),
                    "cost_ratio": c.get("ratio"),
                    "target_reached": t.get("reached"),
                    "target_mean_steps": t.get("mean_steps"),
                    "target_mean_seconds": t.get("mean_seconds"),
                }
            )
    return rows


def write_csv(study: dict, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLS)
        w.writeheader()
        for r in csv_rows(study):
            w.writerow(
                {
                    k: "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                    for k, v in r.items()
                }
            )


def write_report(study: dict, out: Path) -> list[Path]:
    """report.md, report.html, summary.csv and the PNGs into `out` (the study dir: relative
    run dirs are read from there). An `analysis.md` already in `out` (the study file's
    `analysis:` hook) is appended under "## Analysis". Returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    analysis = (out / "analysis.md").read_text() if (out / "analysis.md").is_file() else None
    blocks, pngs = document(study, out, analysis)
    title = f"tricks study: {study.get('name') or study.get('study_file') or ''}"
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, out, title))
    write_csv(study, out / "summary.csv")
    return [out / "report.md", out / "report.html", out / "summary.csv", *[out / p for p in pngs]]
