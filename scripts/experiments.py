#!/usr/bin/env python
"""Run the recipes of experiments/ and turn their sweeps into committed reports.

A recipe is a folder experiments/<name>/ with a `recipe.yaml`:

    # one-line description
    seeds: [0, 1, 2, 3, 4]
    common: [model=mlp, trainer.epochs=40]        # overrides shared by every arm
    arms:                                         # arm -> overrides; each arm is ONE
      baseline: []                                #   `tricks train -m` sweep (sweep syntax ok)
      flood: ['reg=[flooding]', 'reg.flooding.b=0.05,0.1']
    compare:                                      # report -> `tricks compare` over some arms
      main: {arms: [baseline, flood], baseline: arm=baseline, metric: test/acc}
    analysis: flooding                            # optional extra analysis (a function below)

Every run is tagged `+arm=<arm>` so `tricks compare` groups by arm and `--baseline arm=baseline`
picks the baseline without ambiguity.

Usage:
    python scripts/experiments.py list
    python scripts/experiments.py run flooding                 # sweep every arm, then report
    python scripts/experiments.py run flooding --dry-run       # print the tricks commands only
    python scripts/experiments.py run all                      # every recipe, in order
    python scripts/experiments.py run flooding trainer.device=cuda trainer.epochs=200 \
        --runs-dir /scratch/flooding --out /scratch/flooding/results   # bigger, elsewhere
    python scripts/experiments.py report flooding              # re-make reports from the runs
    python scripts/experiments.py cost rdrop_vs_adversarial    # time per step of every arm,
                                                               # interleaved in one process

Extra overrides replace the recipe's value for the same key (they do not duplicate it).
Re-running a recipe skips completed jobs (Hydra sweep dirs are fixed: runs/<arm>).
Runs go to experiments/<name>/runs/ (git-ignored); reports to experiments/<name>/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
ORDER = ("flooding", "derived", "clipping", "lion_vs_adamw", "rdrop_vs_adversarial",
         "childtuning")


# -- recipes ---------------------------------------------------------------------------------

def recipes() -> list[str]:
    found = sorted(p.parent.name for p in EXPERIMENTS.glob("*/recipe.yaml"))
    return sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def load(name: str) -> dict:
    import yaml

    path = EXPERIMENTS / name / "recipe.yaml"
    if not path.is_file():
        sys.exit(f"error: no recipe {name!r} (have: {', '.join(recipes())})")
    r = yaml.safe_load(path.read_text()) or {}
    r["name"] = name
    r["description"] = describe(path)
    r.setdefault("seeds", [0, 1, 2, 3, 4])
    r.setdefault("common", [])
    r.setdefault("arms", {})
    r.setdefault("compare", {})
    return r


def describe(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge(*lists: list[str]) -> list[str]:
    """Concatenate override lists; a later override of the same key replaces the earlier one."""
    out: dict[str, str] = {}
    for lst in lists:
        for o in lst:
            k = key_of(o)
            out.pop(k, None)
            out[k] = o
    return list(out.values())


def seeds_arg(seeds) -> str:
    return "seed=" + ",".join(str(s) for s in seeds)


def arm_overrides(recipe: dict, arm: str, extra: list[str] = ()) -> list[str]:
    """The overrides of one arm (sweep syntax kept), without seed and output dir.

    Order: common, arm, extra (a user's override wins), then `+arm=NAME`. An arm value written
    `KEY=Nx` (e.g. `trainer.epochs=2x`) means N times KEY's value in common+extra: equal-compute
    baselines stay equal-compute when the user scales the recipe up."""
    base = merge(list(recipe["common"]), list(extra))
    values = {key_of(o): o.split("=", 1)[1] for o in base if "=" in o}
    plain, scaled = [], []
    for o in recipe["arms"][arm] or []:
        k, _, v = o.partition("=")
        if v.endswith("x") and v[:-1].replace(".", "", 1).isdigit():
            if key_of(o) not in values:
                raise SystemExit(f"error: {recipe['name']}/{arm}: {o} needs {key_of(o)} in "
                                 f"common or the command line")
            n = float(v[:-1]) * float(values[key_of(o)])
            scaled.append(f"{k}={int(n) if n == int(n) else n}")
        else:
            plain.append(o)
    return merge(list(recipe["common"]), plain, list(extra), scaled, [f"+arm={arm}"])


def arm_command(recipe: dict, arm: str, runs_dir: Path, extra: list[str] = (),
                seeds=None) -> list[str]:
    ovr = arm_overrides(recipe, arm, extra)
    seeds = recipe["seeds"] if seeds is None else seeds
    return ["tricks", "train", "-m", *ovr, seeds_arg(seeds), "trainer.progress=false",
            f"hydra.sweep.dir={rel(runs_dir / arm)}"]


def rel(p: Path) -> str:
    """p relative to the repo root when inside it (commands in READMEs stay portable)."""
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def first_combo(overrides: list[str]) -> list[str]:
    """The first job of a sweep: `a=1,2` -> `a=1` (for smoke tests). List values `[x,y]` and
    quoted values are left alone."""
    out = []
    for o in overrides:
        k, eq, v = o.partition("=")
        if eq and "," in v and not v.strip().startswith(("[", "'", '"')):
            v = v.split(",")[0]
        out.append(f"{k}={v}" if eq else o)
    return out


# -- running ---------------------------------------------------------------------------------

# the files a run's numbers depend on: code, configs and recipes (not docs or results)
RUN_INPUTS = ("runner", "conf", "scripts", "pyproject.toml", ":(glob)experiments/*/recipe.yaml")


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True).stdout.strip()
        # only what changes a run counts (the driver itself rewrites READMEs and results/)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *RUN_INPUTS], cwd=ROOT, text=True,
                               capture_output=True).stdout.strip()
        return sha + (" (+ uncommitted changes in the shared tree)" if dirty else "")
    except OSError:
        return "unknown"


def paths_for(recipe: dict, runs_dir: str | None, out: str | None) -> tuple[Path, Path]:
    base = EXPERIMENTS / recipe["name"]
    return (Path(runs_dir) if runs_dir else base / "runs"), (Path(out) if out else base / "results")


def run(recipe: dict, extra: list[str], runs_dir: Path, out: Path, arms=None, dry=False,
        seeds=None, parallel: int = 1) -> int:
    """Sweep the arms, `parallel` of them at a time (each arm is one `tricks train -m`)."""
    arms = arms or list(recipe["arms"])
    unknown = [a for a in arms if a not in recipe["arms"]]
    if unknown:
        sys.exit(f"error: {recipe['name']} has no arm {unknown[0]!r} "
                 f"(have: {', '.join(recipe['arms'])})")
    info_path = out / "run_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info.setdefault("arms", {})
    # one thread per run: these small models gain nothing from more, and sweeps share cores
    env = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **os.environ}
    code = 0
    pending = list(arms)
    active: list[tuple[str, list, float, subprocess.Popen]] = []
    commits: dict[str, str] = {}  # each arm's commit when its sweep started

    def finish(arm, cmd, t0, p):
        nonlocal code
        wall = time.time() - t0
        code = code or p.returncode
        if info_path.is_file():  # another driver may have added arms meanwhile
            info["arms"] = {**json.loads(info_path.read_text()).get("arms", {}), **{
                k: v for k, v in info["arms"].items() if k != arm}}
        prev = info["arms"].get(arm, {})
        commit = commits.pop(arm)
        if prev.get("commit") and prev["commit"].split(", then ")[-1] != commit:
            commit = f"{prev['commit']}, then {commit}"  # a re-run at another commit
        info["arms"][arm] = {"command": shlex.join(cmd), "commit": commit,
                             # completed jobs are skipped on a re-run: the times add up
                             "wall_seconds": round(wall + prev.get("wall_seconds", 0), 1),
                             "exit_code": p.returncode, "parallel_arms": parallel,
                             "invocations": prev.get("invocations", 1 if prev else 0) + 1,
                             "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        out.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"[{recipe['name']}/{arm}] {wall:.0f} s, exit {p.returncode}", flush=True)

    while pending or active:
        while pending and len(active) < max(1, parallel):
            arm = pending.pop(0)
            cmd = arm_command(recipe, arm, runs_dir, extra, seeds)
            print("$ " + shlex.join(cmd), flush=True)
            if dry:
                continue
            if not lock(runs_dir / arm):
                print(f"[{recipe['name']}/{arm}] skipped: another driver is sweeping "
                      f"{rel(runs_dir / arm)} (see its .driver.lock)", flush=True)
                code = code or 1
                continue
            commits[arm] = git_commit()
            active.append((arm, cmd, time.time(), subprocess.Popen(cmd, cwd=ROOT, env=env)))
        for item in list(active):
            if item[3].poll() is not None:
                active.remove(item)
                (runs_dir / item[0] / ".driver.lock").unlink(missing_ok=True)
                finish(*item)
        if active:
            time.sleep(1)
    return code


def lock(arm_dir: Path) -> bool:
    """Claim an arm's sweep dir for this driver: two sweeps writing the same job dirs at once
    would race on checkpoints. A lock whose process is gone is taken over."""
    arm_dir.mkdir(parents=True, exist_ok=True)
    f = arm_dir / ".driver.lock"
    try:
        pid = int(f.read_text().strip())
        if pid != os.getpid():
            os.kill(pid, 0)  # raises if that process is gone
            return False
    except (OSError, ValueError):
        pass
    f.write_text(str(os.getpid()))
    return True


# -- reports ---------------------------------------------------------------------------------

def compare(recipe: dict, runs_dir: Path, out: Path, only=None) -> None:
    for cname, spec in recipe["compare"].items():
        if only and cname not in only:
            continue
        paths = [str(runs_dir / a) for a in spec["arms"] if (runs_dir / a).is_dir()]
        if paths and spec.get("where"):
            paths = select(paths, spec["where"])
        if not paths:
            print(f"[{recipe['name']}/{cname}] no runs yet", flush=True)
            continue
        cmd = ["tricks", "compare", *[rel(Path(p)) for p in paths], "--metric", spec.get("metric", "test/acc"),
               "--out", rel(out / cname)]
        if spec.get("baseline"):
            cmd += ["--baseline", spec["baseline"]]
        print("$ " + shlex.join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    fn = recipe.get("analysis")
    if fn:
        ANALYSES[fn](recipe, runs_dir, out)
    update_readme(recipe, out)  # only when the README has markers for this output dir


def select(paths: list[str], where: dict) -> list[str]:
    """The run dirs under `paths` whose config has every `key: value` of `where`."""
    from runner.compare import _match, find_run_dirs, load_run_dir

    keep = []
    for p in paths:
        for d in find_run_dirs(Path(p)):
            r = load_run_dir(d)
            desc = {**r.config, **r.choices}
            if all(k in desc and _match(str(desc[k]), str(v)) for k, v in where.items()):
                keep.append(str(d))
    return keep


def load_runs(dirs, failed=False):
    """Completed runs under `dirs` (and failed ones too with failed=True: a diverged run is a
    result for clipping)."""
    from runner.compare import load_runs as lr

    dirs = [str(d) for d in dirs if Path(d).is_dir()]
    ok = ("completed", "failed") if failed else ("completed",)
    return [r for r in lr(dirs) if r.status in ok] if dirs else []


def ci(values):
    from runner.compare import describe as d

    s = d(values)
    return s["mean"], s["ci95"], s["n"]


def fmt(m, h, digits=4):
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "n/a"
    return f"{m:.{digits}f} ± {h:.{digits}f}" if not math.isnan(h) else f"{m:.{digits}f}"


def write_md(out: Path, name: str, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(text)
    print(f"wrote {out / name}", flush=True)


def save_plot(fig, out: Path, name: str, caption: str, lines: list) -> None:
    """Write an analysis figure next to analysis.md and link it from the analysis lines."""
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name, dpi=110)
    lines.append(f"\n![{caption}]({name})\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def analysis_flooding(recipe, runs_dir, out):
    """Test loss and accuracy against the flood level b, clean and noisy labels."""
    plt = _plt()
    lines = ["# Flooding: final metrics against b\n",
             "Mean ± 95% CI over seeds. `test/acc` is at the best-val checkpoint; "
             "`final/*` at the last step.\n"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for arm in recipe["arms"]:
        runs = load_runs([runs_dir / arm])
        if not runs:
            continue
        by_b = {}
        for r in runs:
            by_b.setdefault(float(r.config.get("reg.flooding.b", 0.0)), []).append(r)
        bs = sorted(by_b)
        lines.append(f"\n## {arm}\n\n| b | n | test/acc (best val) | final/test/acc | "
                     f"final/test/loss | final train/loss |\n|---|---|---|---|---|---|")
        series = {k: [] for k in ("test/acc", "final/test/loss", "final/test/acc")}
        for b in bs:
            rs = by_b[b]
            row = [f"{b:g}", str(len(rs))]
            for k in ("test/acc", "final/test/acc", "final/test/loss"):
                m, h, _ = ci([r.value(k) for r in rs])
                series.setdefault(k, []).append((m, h))
                row.append(fmt(m, h))
            tl = [last(r.rows, "train/loss") for r in rs]
            m, h, _ = ci([v for v in tl if v is not None])
            row.append(fmt(m, h))
            lines.append("| " + " | ".join(row) + " |")
        for ax, k in zip(axes, ("test/acc", "final/test/acc", "final/test/loss")):
            ms = [m for m, _ in series[k]]
            hs = [0 if math.isnan(h) else h for _, h in series[k]]
            ax.errorbar(bs, ms, yerr=hs, marker="o", capsize=3, label=arm)
            ax.set_xlabel("flood level b")
            ax.set_title(k)
    for ax in axes:
        ax.legend()
        ax.grid(alpha=.3)
    save_plot(fig, out, "flooding_vs_b.png", "metrics vs b", lines)
    write_md(out, "analysis.md", "\n".join(lines) + "\n")


def last(rows, key):
    for r in reversed(rows):
        if r.get(key) is not None:
            return r[key]
    return None


def steps_to(rows, key, target, smooth=3):
    """First step at which the running mean of the last `smooth` logged `key` values <= target."""
    vals = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    for i in range(len(vals)):
        window = [v for _, v in vals[max(0, i - smooth + 1):i + 1]]
        if len(window) == smooth and sum(window) / smooth <= target:
            return vals[i][0]
    return None


def analysis_clipping(recipe, runs_dir, out):
    """Steps to reach a target training loss, per lr x clip form x threshold."""
    plt = _plt()
    target = float(recipe.get("target_loss", 1.0))
    smooth = int(recipe.get("target_smooth", 3))
    lines = [f"# Gradient clipping: steps to reach train/loss <= {target:g}\n",
             f"train/loss is logged every `trainer.log_every` steps (the mean over that "
             f"interval); a run reaches the target at the first step where the mean of its last "
             f"{smooth} logged values is <= {target:g}. Mean ± 95% CI over the runs that reach "
             f"it; `reached` counts them; `diverged` counts runs stopped by non-finite "
             f"gradients. Also the test accuracy (best-val checkpoint) of the runs that "
             f"completed.\n",
             "| lr | clip | threshold | diverged | reached | steps to target | test/acc | "
             "final train/loss |",
             "|---|---|---|---|---|---|---|---|"]
    runs = load_runs(sorted(runs_dir.glob("*")), failed=True)
    groups = {}
    for r in runs:
        lr = r.config.get("optimizer.lr")
        clip = r.choices.get("clip", "none")
        thr = r.config.get("clip.max_norm")
        groups.setdefault((lr, clip, thr), []).append(r)
    curves = {}
    for (lr, clip, thr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                      kv[0][2] or 0)):
        st = [steps_to(r.rows, "train/loss", target, smooth) for r in rs]
        hit = [s for s in st if s is not None]
        m, h, _ = ci(hit) if hit else (None, float("nan"), 0)
        done = [r for r in rs if r.status == "completed"]
        ma, ha, _ = ci([r.value("test/acc") for r in done]) if done else (None, 0, 0)
        mf, hf, _ = ci([last(r.rows, "train/loss") for r in done]) if done else (None, 0, 0)
        lines.append(f"| {lr:g} | {clip} | {'' if thr is None else f'{thr:g}'} | "
                     f"{len(rs) - len(done)}/{len(rs)} | {len(hit)}/{len(rs)} | {fmt(m, h, 0)} | "
                     f"{fmt(ma, ha)} | {fmt(mf, hf)} |")
        curves.setdefault(lr, []).append((f"{clip}" + ("" if thr is None else f" {thr:g}"), rs))
    lrs = sorted(curves)
    if lrs:
        fig, axes = plt.subplots(1, len(lrs), figsize=(5 * len(lrs), 4), squeeze=False)
        for ax, lr in zip(axes[0], lrs):
            for label, rs in curves[lr]:
                steps, mean = mean_curve(rs, "train/loss")
                n_div = sum(r.status != "completed" for r in rs)
                ax.plot(steps, mean, label=label + (f" ({n_div}/{len(rs)} diverged)" if n_div
                                                    else ""))
            ax.axhline(target, color="k", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_ylim(top=4.0)  # a diverging curve leaves the plot instead of flattening it
            ax.set_title(f"train/loss, lr={lr:g} (mean over seeds)")
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        save_plot(fig, out, "clipping_curves.png", "train loss curves", lines)
    write_md(out, "analysis.md", "\n".join(lines) + "\n")


def mean_curve(runs, key):
    import numpy as np

    per = [{r["step"]: r[key] for r in run.rows if r.get(key) is not None} for run in runs]
    steps = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return steps, [float(np.mean([p[s] for p in per])) for s in steps]


def optimizer_state_bytes(overrides: list[str]) -> tuple[int, int]:
    """(parameter bytes, optimizer-state bytes) after one step of the composed config."""
    import torch

    from runner import build
    from runner.config import compose

    cfg = compose(overrides)
    data = build.data(cfg)
    model = build.model(cfg, data.info)
    opt = build.optimizer(cfg, model, fused_ok=False)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    pb = sum(p.numel() * p.element_size() for p in model.parameters())
    sb = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
             if torch.is_tensor(v) and v.dim() > 0)
    return pb, sb


def analysis_lion(recipe, runs_dir, out):
    """Each optimizer at its own best (lr, wd) by mean best/val/acc; test/acc compared there;
    sensitivity curve (test/acc vs lr at each lr's best wd); optimizer-state memory. Runs are
    grouped by optimizer, so a grid may be spread over several arms (e.g. an extension arm)."""
    plt = _plt()
    sel = recipe.get("select", "best/val/acc")
    lines = ["# Lion vs AdamW: tuned on their own grids\n",
             f"Each (optimizer, lr, weight_decay) cell: mean ± 95% CI over seeds. The best cell "
             f"of each optimizer is chosen by mean `{sel}` (validation), and compared on "
             f"`test/acc` (at the best-val checkpoint).\n"]
    fig, ax = plt.subplots(figsize=(6, 4))
    best = {}
    by_opt = {}
    for arm in recipe["arms"]:
        for r in load_runs([runs_dir / arm]):
            by_opt.setdefault(r.choices.get("optimizer", arm), []).append(r)
    for opt, runs in by_opt.items():
        cells = {}
        for r in runs:
            cells.setdefault((r.config["optimizer.lr"], r.config["optimizer.weight_decay"]),
                             []).append(r)
        lines.append(f"\n## {opt}\n\n| lr | weight_decay | n | {sel} | test/acc |\n|---|---|---|---|---|")
        scored = []
        for (lr, wd), rs in sorted(cells.items()):
            mv, hv, n = ci([r.value(sel) for r in rs])
            mt, ht, _ = ci([r.value("test/acc") for r in rs])
            scored.append((mv, lr, wd, mt, ht, rs))
            lines.append(f"| {lr:g} | {wd:g} | {n} | {fmt(mv, hv)} | {fmt(mt, ht)} |")
        b = max(scored, key=lambda s: s[0])
        best[opt] = b
        lines.append(f"\nbest {opt}: lr={b[1]:g}, weight_decay={b[2]:g}\n")
        lrs = sorted({s[1] for s in scored})
        ys, hs = [], []
        for lr in lrs:
            s = max((s for s in scored if s[1] == lr), key=lambda s: s[0])
            ys.append(s[3])
            hs.append(0 if math.isnan(s[4]) else s[4])
        ax.errorbar(lrs, ys, yerr=hs, marker="o", capsize=3, label=f"{opt} (best wd per lr)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("test/acc")
    ax.grid(alpha=.3)
    ax.legend()
    save_plot(fig, out, "sensitivity.png", "accuracy vs lr", lines)
    if len(best) >= 2:
        dirs = [r.path for b in best.values() for r in b[5]]
        base = recipe.get("best_baseline", "optimizer=adamw")
        cmd = ["tricks", "compare", *dirs, "--metric", "test/acc", "--baseline", base,
               "--out", str(out / "at_best")]
        print("$ tricks compare <the best cell of each optimizer> --metric test/acc "
              f"--baseline {base} --out {out / 'at_best'}", flush=True)
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
        lines.append("At each one's best cell: see [at_best/report.md](at_best/report.md).\n")
    # optimizer-state memory, measured on the recipe's model
    lines.append("\n## Optimizer-state memory\n\nMeasured after one step on the recipe's model "
                 "(bytes of tensors in `optimizer.state`).\n\n| optimizer | parameters | state | "
                 "state / parameters |\n|---|---|---|---|")
    measured = set()
    for arm in recipe["arms"]:
        ovr = first_combo(merge(list(recipe["common"]), list(recipe["arms"][arm])))
        opt = next((o.split("=", 1)[1] for o in ovr if o.startswith("optimizer=")), arm)
        if opt in measured:
            continue
        measured.add(opt)
        try:
            pb, sb = optimizer_state_bytes(ovr)
        except Exception as e:  # a model that cannot be built here: say so
            lines.append(f"| {opt} | n/a | n/a | {type(e).__name__} |")
            continue
        lines.append(f"| {opt} | {pb / 1e6:.3f} MB | {sb / 1e6:.3f} MB | {sb / pb:.2f}× |")
    write_md(out, "analysis.md", "\n".join(lines) + "\n")


def measure_cost(recipe: dict, extra: list[str], out: Path, steps: int = 300, reps: int = 3,
                 baseline: str = "baseline", arms=None, threads: int = 1) -> None:
    """Time per optimizer step of each arm, measured in ONE process with the arms interleaved
    (round-robin, `reps` rounds, median of train_seconds / steps): on a shared machine the load
    changes between sweeps, so the samples/s of separate sweeps do not give a fair cost ratio.
    One torch thread by default, as the sweeps run (OMP_NUM_THREADS=1)."""
    import statistics
    import tempfile

    import torch

    from runner.config import compose
    from runner.main import run as train

    torch.set_num_threads(threads)
    arms = list(arms or recipe["arms"])
    if baseline not in arms:
        arms.insert(0, baseline)
    per = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for a in arms:
                ovr = merge(first_combo(arm_overrides(recipe, a, extra)),
                            [f"trainer.max_steps={steps}", f"trainer.eval_every={steps}",
                             f"trainer.log_every={max(1, steps // 5)}", "trainer.progress=false",
                             f"trainer.checkpoint_every={steps}", f"seed={rep}"])
                summary = train(compose(ovr), Path(tmp) / f"{a}-{rep}")
                per[a].append(summary["train_seconds"] / summary["steps"])
                print(f"[cost] {a} rep {rep}: {per[a][-1] * 1e3:.2f} ms/step", flush=True)
    med = {a: statistics.median(v) for a, v in per.items() if v}
    base = med.get(baseline)
    lines = ["# Measured cost per optimizer step\n",
             f"All arms timed in one process ({threads} torch thread{'s' if threads > 1 else ''}), "
             f"interleaved, {reps} rounds of {steps} steps each; "
             f"median over rounds of training seconds per optimizer step (evaluation excluded). "
             f"Arms that differ from the baseline only in epochs cost the same per step: their "
             f"ratio shows the measurement's noise on this shared machine.\n",
             f"| arm | ms / step (rounds) | × {baseline} |", "|---|---|---|"]
    for a in arms:
        if a in med:
            rounds = ", ".join(f"{x * 1e3:.1f}" for x in per[a])
            ratio = f"{med[a] / base:.2f}×" if base else ""
            lines.append(f"| {a} | {med[a] * 1e3:.2f} ({rounds}) | {ratio} |")
    write_md(out, "cost.md", "\n".join(lines) + "\n")


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def render(recipe: dict, out: Path) -> str:
    """The README's results section, made only from files the run wrote: run_info.json, each
    comparison's report.md and the analysis.md. Nothing here is typed by hand."""
    import re

    info_path = out / "run_info.json"
    if not info_path.is_file():
        return "**Not run yet.** The command above runs it.\n"
    info = json.loads(info_path.read_text())
    arms = info.get("arms", {})
    lines = ["### How it was run\n",
             f"Seeds: {', '.join(str(s) for s in recipe['seeds'])}. One `tricks train -m` sweep per "
             "arm (the driver adds `+arm=NAME`, `seed=...`, `trainer.progress=false` and the "
             "sweep dir). Wall time is the arm's whole sweep, measured on a 2-core CPU shared with "
             "other jobs: it, `samples/s` and `cost ×` below are noisy and only roughly "
             "comparable between arms.\n",
             "| arm | commit | wall (whole sweep) | finished | command |", "|---|---|---|---|---|"]
    for arm, a in arms.items():
        lines.append(f"| {arm} | `{a['commit']}` | {a['wall_seconds']:.0f} s | {a['finished']} | "
                     f"`{a['command']}` |")
    missing = [a for a in recipe["arms"] if a not in arms]
    if missing:
        lines.append(f"\nArms not run yet: {', '.join(missing)}.\n")

    def include(md: Path, prefix: str) -> list[str]:
        text = md.read_text()
        if text.startswith("# "):
            text = text.split("\n", 1)[1]  # the section heading stands for it
        # links to plots: relative to the README
        text = re.sub(r"\]\((?!http)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", text)
        text = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)
        return [text.strip(), ""]

    for cname in recipe["compare"]:
        md = out / cname / "report.md"
        if md.is_file():
            lines += [f"\n### Comparison `{cname}`\n"] + include(md, f"{rel_out_for_readme(recipe, out)}/{cname}")
    if (out / "at_best" / "report.md").is_file():
        lines += ["\n### At each optimizer's best cell\n"] + include(
            out / "at_best" / "report.md", f"{rel_out_for_readme(recipe, out)}/at_best")
    if (out / "cost.md").is_file():
        lines += ["\n### Cost\n"] + include(out / "cost.md", rel_out_for_readme(recipe, out))
    if (out / "analysis.md").is_file():
        lines += ["\n### Analysis\n"] + include(out / "analysis.md", rel_out_for_readme(recipe, out))
    return "\n".join(lines) + "\n"


def rel_out_for_readme(recipe: dict, out: Path) -> str:
    try:
        return str(Path(out).resolve().relative_to((EXPERIMENTS / recipe["name"]).resolve()))
    except ValueError:
        return str(out)


def update_readme(recipe: dict, out: Path) -> None:
    readme = EXPERIMENTS / recipe["name"] / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text()
    tag = rel_out_for_readme(recipe, out)  # "results", or e.g. "results_mlp" for a variant
    begin, end = (BEGIN, END) if tag == "results" else (f"<!-- {tag}:begin -->",
                                                        f"<!-- {tag}:end -->")
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + render(recipe, out) + end + tail)
    print(f"updated {readme}", flush=True)


ANALYSES = {"flooding": analysis_flooding, "clipping": analysis_clipping, "lion": analysis_lion}


# -- CLI -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the recipes and their arms")
    for name in ("run", "report", "cost"):
        p = sub.add_parser(name)
        p.add_argument("recipe", help="a recipe name, or 'all'")
        p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every arm")
        p.add_argument("--arms", help="comma-separated arms (default: all)")
        p.add_argument("--runs-dir", help="where the sweeps go (default experiments/<name>/runs)")
        p.add_argument("--out", help="where reports go (default experiments/<name>/results)")
        if name == "run":
            p.add_argument("--seeds", help="comma-separated seeds (default: the recipe's)")
            p.add_argument("--dry-run", action="store_true", help="print the commands only")
            p.add_argument("--no-report", action="store_true")
            p.add_argument("--parallel", type=int, default=1,
                           help="arms to sweep at the same time (default 1)")
        if name == "cost":
            p.add_argument("--steps", type=int, default=300, help="steps per timed run")
            p.add_argument("--reps", type=int, default=3, help="interleaved rounds")
            p.add_argument("--threads", type=int, default=1, help="torch threads")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Hydra overrides (KEY=VALUE) may stand anywhere, also after --options
    extra = [t for t in argv if "=" in t and not t.startswith("-")]
    a = ap.parse_args([t for t in argv if t not in extra])
    if a.cmd != "list":
        a.overrides = list(a.overrides) + extra
    if a.cmd == "list":
        for n in recipes():
            r = load(n)
            print(f"{n:24s} {r['description']}")
            for arm in r["arms"]:
                print(f"    {arm:20s} {' '.join(r['arms'][arm] or []) or '(common only)'}")
        return 0
    names = recipes() if a.recipe == "all" else [a.recipe]
    code = 0
    for n in names:
        r = load(n)
        runs_dir, out = paths_for(r, a.runs_dir if len(names) == 1 else None,
                                  a.out if len(names) == 1 else None)
        arms = a.arms.split(",") if a.arms else None
        if a.cmd == "cost":
            measure_cost(r, a.overrides, out, a.steps, a.reps, arms=arms, threads=a.threads)
            update_readme(r, out)
            continue
        if a.cmd == "run":
            seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else None
            code = run(r, a.overrides, runs_dir, out, arms, a.dry_run, seeds,
                       a.parallel) or code
            if a.dry_run or a.no_report:
                continue
        compare(r, runs_dir, out)
    return code


if __name__ == "__main__":
    sys.exit(main())
