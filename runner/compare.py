"""`tricks compare PATH... [--metric test/acc] [--baseline KEY=VALUE] [--out DIR]`.

From a sweep to a verdict: which trick helped, by how much, how sure, at what cost.

1. Read runs: run directories, sweep directories (recursively), or `wandb:ENTITY/PROJECT[/GROUP]`
   through the W&B public API (online only).
2. Group runs by the config keys that differ across them, ignoring the seed and keys that cannot
   change a result (resume, logging, progress bar, output paths). A group choice that differs
   (`optimizer=adamw` vs `optimizer=sgd`) stands for all the keys it sets.
3. Per group: n, mean, sample std, 95% CI of the mean (t distribution, n-1 dof), best run.
   Difference to the baseline group with its 95% CI and p-value: a paired t-test when both groups
   ran the same seeds (differences per seed), Welch's unequal-variance t-test otherwise.
   p_holm: Holm-adjusted across the groups compared with the baseline; the verdict at 95%
   (better / worse / no significant difference) is read on p_holm; zero spread gives none.
   failed k/n: the group's failed runs (k) among its runs (n); MDE: the difference the test
   would find with 80% power at that n and spread (runner/stats.py).
4. Cost per group: samples/s, wall time, peak memory, each as a ratio to the baseline.
5. Output: a ranked rich table; DIR/report.md, DIR/summary.csv, DIR/final.png (final metric per
   group with CI), DIR/curves.png and DIR/train_loss.png (learning curves: mean with a 95% CI band
   per group), DIR/report.html (self-contained: the table and plots embedded).
Failed or unfinished runs are listed apart and never averaged.

What cannot fool it: one run per (config, seed) counts (the same sweep passed twice, a copied
run dir, a config re-run on its seed: the first completed run is kept, the others are listed as
duplicates, never averaged); runs on different data (the dataset, or any dataset.* key) are
never compared (one error line naming the keys: compare each dataset's runs apart); a group
whose runs all gave the same figure shows "(no spread)", never a CI of zero width. A verdict
line per group stands above the table (every verdict on the first screen at 1280 px), and a
val split under 100 rows (its accuracy moves in steps of 1/n) is said.
"""

from __future__ import annotations

import csv
import math
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import yaml
from rich.console import Console
from rich.markup import escape as markup_escape
from rich.table import Table

from runner import report_html as rh
from runner.errors import ConfigError, closest
from runner.fmt import fmean, fmem, fnum, fp, fratio, fsigned
from runner.fmt import is_num as _ok
from runner.log.wandb import _safe, log_verdict
from runner.runs import (
    Group,
    Run,
    _no_trick,
    descriptor,
    differing_keys,
    group_runs,
    is_run_dir,
    label_of,
    load_runs,
    val_rows,
    val_rows_note,
)
from runner.stats import compare_to, describe, holm_verdicts, lower_is_better, match_value

ALPHA = 0.05


# -- statistics: runner/stats.py ------------------------------------------------------------


def _mean(xs):
    xs = [
        float(x)
        for x in xs
        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    ]
    return sum(xs) / len(xs) if xs else None


def _ratio(a, b):
    return a / b if a is not None and b else None


# -- the comparison --------------------------------------------------------------------------


@dataclass
class Result:
    metric: str
    higher_better: bool
    keys: list
    groups: list  # of Group, ranked
    baseline: Group
    baseline_reason: str
    excluded: list  # of (Run, reason)
    n_runs: int
    sources: list
    command: str = ""
    notes: list = field(default_factory=list)  # what the reader must know (a small val split)


def choose_baseline(groups: list[Group], baseline: str | None) -> tuple[Group, str]:
    if baseline:
        if "=" not in baseline:
            raise ConfigError(
                "--baseline",
                f"expected KEY=VALUE, got {baseline!r}",
                "e.g. optimizer=adamw, reg=none",
            )
        k, v = baseline.split("=", 1)
        k, v = k.strip(), v.strip()
        keys = {kk for g in groups for kk, _ in g.key}
        descs = [dict(g.key) | descriptor(g.runs[0]) for g in groups]
        matches = [g for g, d in zip(groups, descs) if k in d and match_value(d[k], v)]
        if not matches:
            if not any(k in d for d in descs):
                raise ConfigError(
                    "--baseline",
                    f"unknown key {k!r}{closest(k, keys)}",
                    ", ".join(sorted(keys)) or "no key differs across groups",
                )
            vals = sorted({d[k] for d in descs if k in d})
            raise ConfigError(
                "--baseline", f"no group has {k}={v}{closest(v, vals)}", ", ".join(vals)
            )
        why = f"--baseline {k}={v}"
        if len(matches) > 1:
            why += f" (the first of {len(matches)} matching groups)"
        return matches[0], why
    for g in groups:
        d = dict(g.key) | descriptor(g.runs[0])
        if _no_trick(d):
            first = g is groups[0]
            return g, (
                "default: the first group"
                if first and all(_no_trick(dict(x.key) | descriptor(x.runs[0])) for x in groups)
                else "default: the group without a trick"
            )
    return groups[0], "default: the first group (every group uses a trick)"


def failed_per_group(excluded: list, keys: list[str]) -> dict[tuple, int]:
    """Group key -> how many of its runs failed (status failed, or completed without a finite
    metric); unfinished runs are not failures (they may still be running)."""
    bad = [r for r, why in excluded if r.status in ("failed", "completed")]
    return {k: len(v) for k, v in group_runs(bad, keys).items()}


def one_per_seed(runs: list[Run], metric: str) -> tuple[list[Run], list]:
    """One run per (config, seed): a sweep passed twice, a copy of a run dir, or a config run
    again on its seed would count one seed twice (a narrower CI, a smaller p). The first
    completed run with the metric is kept (in path order), the others are returned as
    (run, why) and listed apart, never averaged. Runs without a seed are all kept."""
    has = lambda r: r.status == "completed" and r.value(metric) is not None  # noqa: E731
    kept, dups, first = [], [], {}
    for r in sorted(runs, key=lambda r: not has(r)):  # stable: path order within each
        if r.seed is None:
            kept.append(r)
            continue
        key = (tuple(sorted(descriptor(r).items())), str(r.seed))
        if key in first:
            dups.append((r, f"duplicate: same config and seed as {first[key].path}; counted once"))
            continue
        first[key] = r
        kept.append(r)
    order = {id(r): i for i, r in enumerate(runs)}
    return sorted(kept, key=lambda r: order[id(r)]), dups


def check_one_dataset(runs: list[Run]) -> None:
    """Runs on different data (the dataset, or any dataset.* key) are never compared: their
    difference would be the data's, not the trick's. One error line naming the keys and the
    runs on each, and how to compare them apart."""
    keys = [k for k in differing_keys(runs) if k == "dataset" or k.startswith("dataset.")]
    if not keys:
        return
    parts = [f"{label_of(k)} ({len(rs)} run(s))" for k, rs in group_runs(runs, keys).items()]
    raise ConfigError(
        "PATH",
        f"these runs are on different data ({', '.join(keys)} differ: {'; '.join(parts)}); "
        "a difference across data is not a trick's: compare each dataset's runs apart "
        "(give only their run or sweep dirs)",
    )


def analyse(
    runs: list[Run],
    metric: str = "test/acc",
    baseline: str | None = None,
    sources: list | None = None,
) -> Result:
    higher = not lower_is_better(metric)
    runs, duplicates = one_per_seed(runs, metric)
    excluded, ok = [], []
    for r in runs:
        if r.status != "completed":
            excluded.append((r, r.status + (f": {r.error}" if r.error else "")))
        elif r.value(metric) is None:
            excluded.append((r, f"no finite {metric}"))
        else:
            ok.append(r)
    if not ok:
        if runs and all(r.status == "completed" for r in runs):
            known = sorted(
                {
                    k
                    for r in runs
                    for k, v in r.summary.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
            )
            hint = closest(metric, known)
            raise ConfigError("--metric", f"no run has {metric!r}{hint}", ", ".join(known))
        excluded += duplicates
        n = len(runs) + len(duplicates)
        return Result(metric, higher, [], [], None, "", excluded, n, sources or [])
    check_one_dataset(ok)
    keys = differing_keys(ok)
    groups = []
    for key, members in group_runs(ok, keys).items():
        vals = [r.value(metric) for r in members]
        groups.append(Group(label=label_of(key), key=key, runs=members, values=vals))
    base, why = choose_baseline(groups, baseline)
    failed = failed_per_group(excluded, keys)
    b_seeds = [r.seed for r in base.runs]
    b_cost = {
        k: _mean(r.summary.get(k) for r in base.runs)
        for k in ("samples_per_sec", "wall_seconds", "peak_mem_bytes", "train_seconds")
    }
    for g in groups:
        s = describe(g.values, higher)
        s["seeds"] = [r.seed for r in g.runs]
        for k in ("samples_per_sec", "wall_seconds", "peak_mem_bytes", "train_seconds"):
            s[k] = _mean(r.summary.get(k) for r in g.runs)
            s[k + "_ratio"] = _ratio(s[k], b_cost[k])
        # cost of the same work relative to the baseline: >1 = slower per sample
        s["cost_ratio"] = _ratio(b_cost["samples_per_sec"], s["samples_per_sec"])
        s["failed"] = failed.get(g.key, 0)
        if g is base:
            s.update(
                diff=0.0,
                diff_low=float("nan"),
                diff_high=float("nan"),
                p=float("nan"),
                p_holm=float("nan"),
                test="",
                mde=float("nan"),
                verdict="baseline",
            )
        else:
            s.update(compare_to(g.values, s["seeds"], base.values, b_seeds, higher))
        g.stats = s
    holm_verdicts([g.stats for g in groups if g is not base], higher)
    groups.sort(key=lambda g: -g.stats["mean"] if higher else g.stats["mean"])
    excluded += duplicates  # after failed_per_group: a copy is not a failure
    n = len(runs) + len(duplicates)
    res = Result(metric, higher, keys, groups, base, why, excluded, n, sources or [])
    small = val_rows_note(val_rows(row.get("val/acc") for r in ok for row in r.rows))
    res.notes += [small] if small else []
    return res


# -- formatting: runner/fmt.py -----------------------------------------------------------------


def mean_text(s: dict, values: list) -> str:
    """`mean ± half-width`; runs that all gave the same figure have no spread, not a CI of 0."""
    if s["n"] > 1 and len(set(values)) == 1:
        return f"{fnum(s['mean'])} (no spread)"
    return fmean(s["mean"], s["ci95"])


def diff_ci(s: dict) -> str:
    if s["verdict"] == "baseline":
        return "baseline"
    if not _ok(s["diff_low"]):
        return fsigned(s["diff"])
    return f"{fsigned(s['diff'])} [{fsigned(s['diff_low'])}, {fsigned(s['diff_high'])}]"


TABLE_HEAD = [
    "#",
    "group",
    "n",
    "{metric} (mean ± 95% CI)",
    "diff vs baseline [95% CI]",
    "p",
    "p_holm",
    "verdict",
    "best",
    "MDE",
    "failed k/n",
    "samples/s",
    "cost ×",
    "wall s",
    "peak mem",
]
RIGHT = ("#", "n", "p_holm", "MDE", "failed k/n", "samples/s", "cost ×", "wall s", "peak mem")
VERDICT = TABLE_HEAD.index("verdict")  # html() styles the 8th cell: keep the verdict there


def table_rows(res: Result) -> list[list[str]]:
    rows = []
    for i, g in enumerate(res.groups, 1):
        s = g.stats
        p = fp(s["p"]) + (f" ({s['test']})" if s.get("test") and _ok(s["p"]) else "")
        k = s.get("failed", 0)
        rows.append(
            [
                str(i),
                g.label + (" (baseline)" if g is res.baseline else ""),
                str(s["n"]),
                mean_text(s, g.values),
                diff_ci(s),
                p,
                fp(s.get("p_holm")),
                s["verdict"],
                fnum(s["best"]),
                fnum(s.get("mde")),
                f"{k}/{s['n'] + k}",
                fnum(s["samples_per_sec"], 0),
                fratio(s["cost_ratio"]),
                fnum(s["wall_seconds"], 1),
                fmem(s["peak_mem_bytes"]),
            ]
        )
    return rows


def headline(res: Result) -> str:
    n_ok = sum(len(g.runs) for g in res.groups)
    direction = "higher" if res.higher_better else "lower"
    return (
        f"{n_ok} completed run(s) in {len(res.groups)} group(s)"
        f"{f', {len(res.excluded)} excluded' if res.excluded else ''}; metric {res.metric} "
        f"({direction} is better); baseline: {res.baseline.label} ({res.baseline_reason})."
    )


def verdict_lines(res: Result) -> list[tuple[str, str, str]]:
    """(group, verdict, the figures behind it) per group compared with the baseline, in rank
    order: what the reports show above the table, so every verdict is on the first screen."""
    out = []
    for g in res.groups:
        if g is res.baseline:
            continue
        s = g.stats
        out.append(
            (
                g.label,
                str(s["verdict"]),
                f"{diff_ci(s)} vs the baseline, p_holm {fp(s.get('p_holm'))}, n {s['n']}",
            )
        )
    return out


METHOD = (
    "95% CI of the mean from the t distribution (n-1 dof); difference to the baseline with "
    "a paired t-test when both groups ran the same seeds, Welch's t-test otherwise; "
    "p_holm: Holm-adjusted across the groups compared with the baseline, and the verdict "
    "at p_holm < 0.05 (no verdict from zero spread). MDE: the difference that test finds "
    "with 80% power at this n and spread. failed k/n: failed runs (not averaged) among the "
    "group's runs. cost × = baseline samples/s ÷ group samples/s (time per sample "
    "relative to the baseline)."
)

VERDICT_STYLE = {
    "better": "bold green",
    "worse": "bold red",
    "baseline": "bold",
    "no significant difference": "yellow",
}


def print_table(res: Result, console=None) -> None:
    c = console or Console()
    if res.groups:
        c.print(markup_escape(headline(res)))
        for note in res.notes:
            c.print(markup_escape(note))
        t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for h in TABLE_HEAD:
            t.add_column(h.format(metric=res.metric), justify="right" if h in RIGHT else "left")
        for row in table_rows(res):
            style = VERDICT_STYLE.get(row[VERDICT], "dim")
            row = [markup_escape(c) for c in row]  # labels hold brackets: reg=[rdrop]
            row[VERDICT] = f"[{style}]{row[VERDICT]}[/]"
            t.add_row(*row)
        c.print(t)
    if res.excluded:
        t = Table(
            title="failed / unfinished / excluded runs (not averaged)",
            box=None,
            show_header=True,
            header_style="bold",
            title_justify="left",
        )
        t.add_column("run")
        t.add_column("reason")
        for r, why in res.excluded:
            t.add_row(markup_escape(r.path), markup_escape(why))
        c.print(t)


def markdown(res: Result, plots: list[tuple[str, str]] = ()) -> str:
    head = [h.format(metric=res.metric) for h in TABLE_HEAD]
    lines = [
        f"# tricks compare: {res.metric}",
        "",
        f"Sources: {', '.join(f'`{s}`' for s in res.sources)}",
        "",
        headline(res),
        "",
        *[f"- **{label}**: {v} ({why})" for label, v, why in verdict_lines(res)],
        "",
        *[x for note in res.notes for x in (note, "")],
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if h in RIGHT else "---" for h in TABLE_HEAD) + "|",
    ]
    for row in table_rows(res):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines += ["", METHOD, ""]
    lines += [
        "Seeds: "
        + "; ".join(f"{g.label}: {' '.join(map(str, g.stats['seeds']))}" for g in res.groups)
        + ".",
        "",
    ]
    if res.command:
        lines += [f"Made with `{res.command}`.", ""]
    if res.keys:
        lines += [
            "Groups differ in: " + ", ".join(f"`{k}`" for k in res.keys) + " (seed ignored).",
            "",
        ]
    if res.excluded:
        lines += [
            "## Failed, unfinished or excluded runs (not averaged)",
            "",
            "| run | reason |",
            "|---|---|",
        ]
        lines += [f"| `{r.path}` | {why.replace('|', '/')} |" for r, why in res.excluded]
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{title}]({name})" for name, title in plots]
        lines.append("")
    return "\n".join(lines)


def write_csv(res: Result, path: Path) -> None:
    cols = [
        "rank",
        "group",
        "baseline",
        *res.keys,
        "n",
        "mean",
        "std",
        "ci95",
        "ci_low",
        "ci_high",
        "best",
        "diff",
        "diff_low",
        "diff_high",
        "p",
        "p_holm",
        "test",
        "verdict",
        "mde",
        "failed",
        "samples_per_sec",
        "samples_per_sec_ratio",
        "cost_ratio",
        "wall_seconds",
        "wall_seconds_ratio",
        "train_seconds",
        "peak_mem_bytes",
        "peak_mem_bytes_ratio",
        "seeds",
        "runs",
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, g in enumerate(res.groups, 1):
            s, key = g.stats, dict(g.key)
            row = {
                "rank": i,
                "group": g.label,
                "baseline": g is res.baseline,
                **key,
                **s,
                "seeds": " ".join(map(str, s["seeds"])),
                "runs": " ".join(r.path for r in g.runs),
            }
            w.writerow(["" if row.get(c) is None else row.get(c) for c in cols])


# -- plots -----------------------------------------------------------------------------------


def _curve_key(metric: str, runs: list[Run]) -> str:
    for key in (re.sub(r"^(best|final)/", "", metric), "val/acc", "test/acc"):
        if any(key in row for r in runs for row in r.rows):
            return key
    return metric


def _band(runs: list[Run], key: str):
    """steps, mean, low, high of `key` across runs (95% t CI where >= 2 runs have the step)."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in r.rows:
            v = row.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                by_step.setdefault(int(row["step"]), []).append(float(v))
    steps = sorted(by_step)
    mean, lo, hi = [], [], []
    for s in steps:
        d = describe(by_step[s])
        mean.append(d["mean"])
        lo.append(d["ci_low"] if _ok(d["ci95"]) else d["mean"])
        hi.append(d["ci_high"] if _ok(d["ci95"]) else d["mean"])
    return steps, mean, lo, hi


def plot(res: Result, out: Path) -> list[tuple[str, str]]:
    """Write the PNGs; returns [(file name, title)]."""
    matplotlib.use("Agg", force=True)  # files only, whatever backend the caller had
    made = []
    colors = {g.label: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(res.groups)}
    # final metric per group: mean with 95% CI, each run a dot
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(res.groups) + 1.6))
    for i, g in enumerate(reversed(res.groups)):
        s = g.stats
        err = s["ci95"] if _ok(s["ci95"]) else 0
        ax.errorbar(s["mean"], i, xerr=err, fmt="o", color=colors[g.label], capsize=4, markersize=7)
        ax.scatter(g.values, [i] * len(g.values), color=colors[g.label], alpha=0.35, s=14)
    ax.axvline(res.baseline.stats["mean"], color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(res.groups)))
    ax.set_yticklabels([_short(g.label) for g in reversed(res.groups)])
    ax.set_xlabel(f"{res.metric} (mean, 95% CI; dots: runs; dashed: baseline)")
    rh.clip_axis(ax, res.metric, "x")
    ax.set_title(f"{res.metric} per group")
    fig.tight_layout()
    fig.savefig(out / "final.png", dpi=110)
    plt.close(fig)
    made.append(("final.png", f"{res.metric} per group"))

    for key, name in (
        (_curve_key(res.metric, [r for g in res.groups for r in g.runs]), "curves.png"),
        ("train/loss", "train_loss.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        drawn = False
        for i, g in enumerate(res.groups):
            steps, mean, lo, hi = _band(g.runs, key)
            if not steps:
                continue
            drawn = True
            ls, marker = rh.LINESTYLES[i % len(rh.LINESTYLES)]
            ax.plot(
                steps,
                mean,
                color=colors[g.label],
                label=_short(g.label),
                lw=1.6,
                ls=ls,
                marker=marker,
                ms=3,
                markevery=max(1, len(steps) // 12),
            )
            ax.fill_between(steps, lo, hi, color=colors[g.label], alpha=0.2, lw=0)
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        rh.clip_axis(ax, key)
        ax.set_title(f"{key}: mean over seeds with 95% CI band")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append((name, f"{key} learning curves"))
    return made


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _step_counts(runs: list[Run], key: str) -> dict[int, int]:
    """How many runs logged a finite `key` at each step (the n of _band's points)."""
    n: dict[int, int] = {}
    for r in runs:
        for row in r.rows:
            v = row.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                n[int(row["step"])] = n.get(int(row["step"]), 0) + 1
    return n


def svg_plots(res: Result) -> list[str]:
    """The report's interactive plots (runner.report_html): the metric per group, then the
    learning curves; hover shows the arm, n and mean ± 95% CI."""
    color = {g.label: rh.COLORS[i % len(rh.COLORS)] for i, g in enumerate(res.groups)}
    items = [
        {
            "label": g.label,
            "n": g.stats["n"],
            "mean": g.stats["mean"],
            "low": g.stats["ci_low"],
            "high": g.stats["ci_high"],
            "values": g.values,
            "color": color[g.label],
        }
        for g in res.groups
    ]
    figs = [
        rh.figure(
            rh.interval_plot(
                items,
                f"{res.metric} (mean, 95% CI; small dots: runs; dashed: baseline)",
                res.baseline.stats["mean"],
                bounds=rh.metric_bounds(res.metric),
            ),
            f"{res.metric} per group",
        )
    ]
    all_runs = [r for g in res.groups for r in g.runs]
    for key in (_curve_key(res.metric, all_runs), "train/loss"):
        series = []
        for g in res.groups:
            steps, mean, lo, hi = _band(g.runs, key)
            n = _step_counts(g.runs, key)
            if steps:
                series.append(
                    {
                        "label": g.label,
                        "color": color[g.label],
                        "x": steps,
                        "mean": mean,
                        "low": lo,
                        "high": hi,
                        "n": [n[s] for s in steps],
                    }
                )
        if series:
            figs.append(
                rh.figure(
                    rh.curve_plot(series, "step", key, bounds=rh.metric_bounds(key)),
                    f"{key}: mean over seeds with 95% CI band",
                    [(s["label"], s["color"]) for s in series],
                )
            )
    return figs


def _sort_values(res: Result) -> list[list]:
    """Numbers the HTML table sorts by, column by column as TABLE_HEAD."""
    out = []
    for i, g in enumerate(res.groups, 1):
        s = g.stats
        k = s.get("failed", 0)
        out.append(
            [
                i,
                None,
                s["n"],
                s["mean"],
                s["diff"],
                s["p"],
                s.get("p_holm"),
                None,
                s["best"],
                s.get("mde"),
                k,
                s["samples_per_sec"],
                s["cost_ratio"],
                s["wall_seconds"],
                s["peak_mem_bytes"],
            ]
        )
    assert all(len(r) == len(TABLE_HEAD) for r in out), "sort values follow TABLE_HEAD"
    return [[v if _ok(v) else None for v in row] for row in out]


def html(res: Result, out: Path, plots: list[tuple[str, str]]) -> str:
    """report.html: one offline file that fits a 1280 px window (runner.report_html)."""
    head = [h.format(metric=res.metric) for h in TABLE_HEAD]
    right = {j for j, h in enumerate(TABLE_HEAD) if h in RIGHT}
    summary = rh.table(
        head,
        table_rows(res),
        right=right,
        wide={1, VERDICT},
        id="summary",
        sort_values=_sort_values(res),
        cell_class=lambda j, c: f"v-{c.split()[0]}" if j == VERDICT and c else "",
    )
    excl = ""
    if res.excluded:
        excl = "<h2>Failed, unfinished or excluded runs (not averaged)</h2>" + rh.table(
            ["run", "reason"], [[r.path, w] for r, w in res.excluded], wide={0, 1}
        )
    keys = (
        (
            "<p>Groups differ in: "
            + ", ".join(f"<code>{escape(k)}</code>" for k in res.keys)
            + " (seed ignored).</p>"
        )
        if res.keys
        else ""
    )
    pngs = (
        (
            "<p class=m>The same plots as PNG files beside this report: "
            + ", ".join(f'<a href="{escape(n)}">{escape(n)}</a>' for n, _ in plots)
            + ".</p>"
        )
        if plots
        else ""
    )
    cmd = f"<p class=m>Made with <code>{escape(res.command)}</code>.</p>" if res.command else ""
    body = (
        f"<h1>tricks compare: {escape(res.metric)}</h1>\n"
        f"<p>Sources: {escape(', '.join(res.sources))}</p>\n<p>{escape(headline(res))}</p>\n"
        f"{rh.verdicts(verdict_lines(res))}\n"
        + "".join(f"<p>{escape(n)}</p>\n" for n in res.notes)
        + f"{summary}\n"
        f"<p class=m>{escape(METHOD)} Click a column header to sort.</p>\n"
        f"{keys}{cmd}{excl}\n<h2>Plots</h2>\n<p class=m>Hover a dot or a row for the arm, "
        f"n and mean ± 95% CI.</p>\n" + "\n".join(svg_plots(res)) + f"\n{pngs}"
    )
    return rh.page(f"tricks compare: {res.metric}", body)


def write_report(res: Result, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(res, out)
    (out / "report.md").write_text(markdown(res, plots))
    write_csv(res, out / "summary.csv")
    (out / "report.html").write_text(html(res, out, plots))
    return [
        out / "report.html",
        out / "report.md",
        out / "summary.csv",
        *[out / n for n, _ in plots],
    ]


def wandb_target(runs: list[Run]) -> tuple[str | None, str | None]:
    """(project, group) the runs were logged to: `logger.project` / `logger.group` of their
    configs, else the group WandbSink gives a sweep's jobs (its hydra.sweep.dir); a source
    `wandb:ENTITY/PROJECT[/GROUP]` names them itself. The most common value wins."""
    projects, groups = Counter(), Counter()
    for r in runs:
        if r.path.startswith("wandb:"):
            parts = r.path[len("wandb:") :].split("/")
            projects[parts[1]] += 1
            continue
        if r.config.get("logger._target_", "").endswith("WandbSink"):
            projects[r.config.get("logger.project") or "tricks"] += 1
            if r.config.get("logger.group"):
                groups[r.config["logger.group"]] += 1
                continue
        hf = Path(r.path) / ".hydra" / "hydra.yaml"
        try:
            h = (yaml.safe_load(hf.read_text()) or {}).get("hydra", {})
            if h.get("mode") == "MULTIRUN" or "RunMode.MULTIRUN" in str(h.get("mode")):
                groups[_safe(h["sweep"]["dir"])] += 1
        except (OSError, KeyError, TypeError, AttributeError):
            pass
    top = lambda c: c.most_common(1)[0][0] if c else None  # noqa: E731
    return top(projects), top(groups)


def log_wandb(res: Result, files: list[Path], runs: list[Run], out: Path) -> Path | None:
    """The verdict as one W&B run of the sweep's project and group (runner.log.wandb)."""
    project, group = wandb_target(runs)
    head = [h.format(metric=res.metric) for h in TABLE_HEAD]
    return log_verdict(
        head,
        table_rows(res),
        [f for f in files if f.suffix == ".png"],
        headline(res),
        project=project,
        group=group,
        name=f"verdict {res.metric}",
        dir=out,
    )


def default_out(paths: list[str]) -> Path:
    local = [Path(p) for p in paths if not str(p).startswith("wandb:")]
    if len(local) == 1 and local[0].is_dir() and not is_run_dir(local[0]):
        return local[0] / "compare"
    return Path("compare")


def main(
    paths: list[str],
    metric: str = "test/acc",
    baseline: str | None = None,
    out: str | None = None,
    wandb: bool = False,
) -> int:
    """The `tricks compare` command; returns the exit code (0: report written, 1: nothing to
    compare). Raises ConfigError for bad input."""
    if not paths:
        raise ConfigError("PATH", "give at least one run or sweep directory")
    runs = load_runs(list(paths))
    res = analyse(runs, metric=metric, baseline=baseline, sources=[str(p) for p in paths])
    local = [Path(p).resolve() for p in paths if not str(p).startswith("wandb:")]
    if twice := sorted({str(p) for p in local if local.count(p) > 1}):
        res.notes.append(f"Given more than once, read once: {', '.join(twice)}.")
    res.command = " ".join(
        [
            "tricks compare",
            *map(shlex.quote, map(str, paths)),
            "--metric",
            shlex.quote(metric),
            *(["--baseline", shlex.quote(baseline)] if baseline else []),
        ]
    )
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    print_table(res, console)
    if not res.groups:
        console.print(
            f"no completed run with {metric} to compare "
            f"({len(res.excluded)} run(s) excluded, listed above)"
        )
        return 1
    dest = Path(out) if out else default_out(list(paths))
    files = write_report(res, dest)
    console.print(
        f"report: {files[0]} (also {', '.join(f.name for f in files[1:])})",
        highlight=False,
        soft_wrap=True,
    )
    if wandb:
        local = log_wandb(res, files, runs, dest)
        if local is not None:
            console.print(f"wandb: verdict run {local}", highlight=False, soft_wrap=True)
    return 0
