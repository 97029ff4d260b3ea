"""What a `tricks study` costs beyond its runs' training, side by side in one run (issue 16 item 6).

    OMP_NUM_THREADS=1 python scripts/bench_study.py [--parallel 2] [--quick] [--out DIR]

Default: the 3-arm x 12-trial + 5-seed mnist1d MLP study of 2000-step runs (none, flooding,
label smoothing; lr shared, each trick's own strength; 3 x (12 + 5) = 51 runs). Three figures:

  (a) the study's wall time (`runner.study.execute`, N long-lived workers that run many runs
      in-process), against the sum of its runs' train time (summary.json `train_seconds`: the
      optimizer steps and evaluations, no start-up) and against that sum over N, the floor;
  (b) the same runs, each as its own `tricks train` process (N at a time), the way a shell loop
      or a Hydra multirun per run would do it: every process imports torch and builds the data;
  (c) the same study run by the code of `--pool-commit` (default 13e8c31: the home-made process
      pool, before the ledger), extracted with `git archive` into DIR/pool_src: the ledger's
      overhead per run is ((a) wall - (c) wall) x N / runs, as a ratio of the mean run's wall
      time (the goal: under 2%). `--pool-commit none` skips it.

The per-run results of (a) and (b) must agree (deterministic CPU runs): the script counts them.
`--quick`: two arms, one trial, two seeds, 20 steps (the test runs that). Writes DIR/bench.json
and DIR/bench.md; the figures for docs/bench.md come from a full-size run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = {
    "steps": 2000,
    "budget": 12,
    "seeds": [0, 1, 2, 3, 4],
    "arms": ("none", "flooding", "label_smoothing"),
}
QUICK = {"steps": 20, "budget": 1, "seeds": [0, 1], "arms": ("none", "flooding")}
ARMS = {
    "none": ([], None),
    "flooding": (["reg=[flooding]"], "reg.flooding.b: uniform(0.01, 0.3)"),
    "label_smoothing": (["reg=[label_smoothing]"], "reg.label_smoothing.eps: uniform(0.0, 0.3)"),
}


def study_text(steps: int, budget: int, seeds: list[int], arms: tuple) -> str:
    every = max(steps // 8, 1)
    lines = [
        "# bench_study: a study's wall time against its runs' train time",
        f"common: [model=mlp, trainer.max_steps={steps}, trainer.eval_every={every}, "
        f"trainer.log_every={max(every // 4, 1)}]",
        "baseline: none",
        "arms:",
    ]
    lines += [f"  {a}: {json.dumps(ARMS[a][0])}" for a in arms]
    lines += ["search:", "  optimizer.lr: loguniform(1e-4, 3e-2)", "arm_search:"]
    lines += [f"  {a}: {{{ARMS[a][1]}}}" for a in arms if ARMS[a][1]]
    lines += [
        f"budget: {budget}",
        "tune_seeds: [100]",
        f"seeds: {json.dumps(seeds)}",
        "select: val/acc",
        "metric: test/acc",
        "equal_compute: false",
    ]
    return "\n".join(lines) + "\n"


def jobs_of(study, result: dict) -> list:
    """Every run of the study (tune trials and confirmations) as a Job (overrides, run_dir)."""
    from runner.study import protocol as P

    jobs = []
    for w in study.workloads:
        plans = P.arm_plans(study)
        trials, tune = P.tune_jobs(study, w, plans, P.points_for(study, plans))
        arms = result["by_workload"][w]["arms"] if result.get("by_workload") else result["arms"]
        chosen = {a: arms[a].get("chosen_trial") for a in plans}
        jobs += tune + P.confirm_jobs(study, w, plans, trials, chosen)
    return jobs


def summaries(root: Path, jobs: list) -> list[dict]:
    out = []
    for j in jobs:
        try:
            out.append(json.loads((root / j.run_dir / "summary.json").read_text()))
        except (OSError, ValueError):
            out.append({})
    return out


def one_process_per_run(jobs: list, root: Path, parallel: int) -> float:
    """Each job as `tricks train OVERRIDES hydra.run.dir=...`, `parallel` at a time; wall s."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def train(j):
        d = root / j.run_dir
        r = subprocess.run(
            [sys.executable, "-m", "runner.cli", "train", *j.overrides, f"hydra.run.dir={d}"],
            env=env,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            print(f"warning: {d}: exit {r.returncode}: {r.stderr.strip()[-300:]}", flush=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as ex:
        list(ex.map(train, jobs))
    return time.perf_counter() - t0


def pool_study(commit: str, out: Path, parallel: int) -> float | None:
    """The study file run by `commit`'s code (its pool) into out/pool; wall s (None: skipped)."""
    if commit == "none":
        return None
    src = out / "pool_src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=tar, check=True)
    code = (
        "import sys, time\n"
        "from runner.study import execute, load\n"
        "s = load(sys.argv[1], [])\n"
        "t = time.perf_counter()\n"
        "execute(s, sys.argv[2], int(sys.argv[3]), progress=False)\n"
        "print('WALL', time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(out / "study.yaml"), str(out / "pool"), str(parallel)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        print(f"warning: the pool study failed: {r.stderr.strip()[-500:]}", flush=True)
        return None
    return float(next(x for x in r.stdout.splitlines() if x.startswith("WALL")).split()[1])


def total(rows: list[dict], key: str) -> float:
    return sum(float(r[key]) for r in rows if isinstance(r.get(key), (int, float)))


def table(fig: dict) -> str:
    n, p = fig["runs"], fig["parallel"]
    rows = [
        (
            "(a) tricks study, in-process workers",
            fig["study_wall_s"],
            fig["study_train_s"],
            fig["study_run_wall_s"],
        ),
        (
            "(b) one tricks train process per run",
            fig["procs_wall_s"],
            fig["procs_train_s"],
            fig["procs_run_wall_s"],
        ),
    ]
    lines = [
        f"{n} runs of {fig['steps']} steps, {p} at a time, {fig['cores']} cores, "
        f"commit {fig['commit']}.",
        "",
        "| way | wall s | Σ train s | Σ run wall s | wall ÷ (Σ train / N) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, wall, tr, rw in rows:
        lines.append(
            f"| {name} | {wall:.1f} | {tr:.1f} | {rw:.1f} | {wall / (tr / p):.2f} |"
            if tr
            else f"| {name} | {wall:.1f} | – | – | – |"
        )
    if fig.get("pool_wall_s"):
        lines.append(
            f"| (c) tricks study of {fig['pool_commit']} (its process pool) | "
            f"{fig['pool_wall_s']:.1f} | {fig['pool_train_s']:.1f} | {fig['pool_run_wall_s']:.1f} "
            f"| {fig['pool_wall_s'] / (fig['pool_train_s'] / p):.2f} |"
        )
    lines += [
        "",
        f"Floor (Σ train s of (a) / N): {fig['study_train_s'] / p:.1f} s. "
        f"(b) / (a) wall: {fig['procs_wall_s'] / fig['study_wall_s']:.2f}×. "
        f"Same test/acc in (a) and (b): {fig['same_result']}/{n} runs.",
    ]
    if fig.get("pool_wall_s"):
        lines += [
            "",
            f"The ledger's overhead per run ((a) - (c) wall x N / runs): "
            f"{fig['ledger_overhead_per_run_s']:+.2f} s, {fig['ledger_overhead_ratio']:+.1%} of "
            f"a run's mean wall time (goal < 2%). Same test/acc in (a) and (c): "
            f"{fig['same_result_pool']}/{n} runs.",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny settings (the test)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--budget", type=int)
    ap.add_argument("--out", default="runs/bench_study")
    ap.add_argument("--pool-commit", default="13e8c31", help="the pool's commit; none: skip")
    args = ap.parse_args(argv)
    size = dict(QUICK if args.quick else FULL)
    size.update({k: v for k, v in (("steps", args.steps), ("budget", args.budget)) if v})
    out = Path(args.out).resolve()
    for sub in ("study", "procs", "pool"):  # a left-over study would resume: nothing would be timed
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    (out / "study.yaml").write_text(study_text(**size))

    from runner.gitinfo import commit_info
    from runner.study import execute, load

    study = load(out / "study.yaml", [])
    print(f"[bench_study] (a) tricks study into {out / 'study'}", flush=True)
    t0 = time.perf_counter()
    result = execute(study, out / "study", args.parallel, progress=False)
    study_wall = time.perf_counter() - t0
    jobs = jobs_of(study, result)
    print(f"[bench_study] (b) {len(jobs)} tricks train processes into {out / 'procs'}", flush=True)
    procs_wall = one_process_per_run(jobs, out / "procs", args.parallel)
    print(f"[bench_study] (c) {args.pool_commit}'s pool into {out / 'pool'}", flush=True)
    pool_wall = pool_study(args.pool_commit, out, args.parallel)
    a, b = summaries(out / "study", jobs), summaries(out / "procs", jobs)
    c = summaries(out / "pool", jobs)
    sha, dirty = commit_info(ROOT)
    fig = {
        "runs": len(jobs),
        "steps": size["steps"],
        "parallel": args.parallel,
        "cores": os.cpu_count(),
        "commit": sha[:12] + ("+dirty" if dirty else ""),
        "study_wall_s": study_wall,
        "study_train_s": total(a, "train_seconds"),
        "study_run_wall_s": total(a, "wall_seconds"),
        "procs_wall_s": procs_wall,
        "procs_train_s": total(b, "train_seconds"),
        "procs_run_wall_s": total(b, "wall_seconds"),
        "completed": sum(r.get("status") == "completed" for r in a),
        "same_result": sum(
            x.get("test/acc") is not None and x.get("test/acc") == y.get("test/acc")
            for x, y in zip(a, b)
        ),
    }
    if pool_wall:
        per_run = (study_wall - pool_wall) * args.parallel / len(jobs)
        fig.update(
            pool_commit=args.pool_commit,
            pool_wall_s=pool_wall,
            pool_train_s=total(c, "train_seconds"),
            pool_run_wall_s=total(c, "wall_seconds"),
            ledger_overhead_per_run_s=per_run,
            ledger_overhead_ratio=per_run / (fig["study_run_wall_s"] / len(jobs)),
            same_result_pool=sum(
                x.get("test/acc") is not None and x.get("test/acc") == y.get("test/acc")
                for x, y in zip(a, c)
            ),
        )
    (out / "bench.json").write_text(json.dumps(fig, indent=2) + "\n")
    (out / "bench.md").write_text(table(fig) + "\n")
    print(table(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
