"""The calibration benchmark of issue 32 (item 8): is `tricks study` with its shipped defaults
calibrated, and does it still find a known effect?

    python scripts/bench_calibration.py --out bench_out/calibration              # 20 + 20 studies
    python scripts/bench_calibration.py --out DIR --studies 30 --replicates 5
    python scripts/bench_calibration.py --out /tmp/c --studies 2 --steps 50 --budget 2   # smoke

A/A: `--studies` studies of the mnist1d MLP (2 x 100, dropout 0.1, the committed regime:
--steps 4200, eval every 210), arms `none` and the built-in A/A arm (the baseline along another
random path of each seed: true effect 0), each study its own search seed (its own scramble,
hence its own tunings). Reported: the false-verdict rate (A/A called better/worse) with its
Wilson 95% CI, and the mean of z^2 (z from each A/A p: a calibrated test gives 1) with a t CI.
Positive: the same design with the blog's FGM (adversarial loss only, one norm over the batch,
as experiments/fgm_vs_noise) on the MLP without dropout, +6 to +7 points committed: its
detection rate (FGM called better) with a Wilson CI.

Hours of CPU at full size (each study is R x (budget + S) runs per arm): run it on demand, never
in the tests. Resumable: each study is a `tricks study` run into DIR/aa-II or DIR/pos-II, and a
re-run resumes each where it stopped (the study's own resume) and skips the finished ones.
Writes DIR/calibration.md (the table for docs/study.md) and DIR/calibration.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
FGM = ["reg=[fgm]", "reg.fgm.mode=adv", "reg.fgm.norm=global"]


def study_text(args, i: int, positive: bool) -> str:
    d = {
        "common": [f"trainer.eval_every={max(1, args.steps // 20)}"],
        "workloads": {
            "mlp": [
                "model=mlp",
                f"model.dropout={0.0 if positive else 0.1}",
                f"trainer.max_steps={args.steps}",
            ]
        },
        "baseline": "none",
        "arms": {"none": [], **({"fgm": FGM} if positive else {})},
        "search": {"optimizer.lr": "loguniform(3e-4, 0.3)"},
        "budget": args.budget,
        "search_seed": 1000 + i,  # each study its own scramble (and tunings)
        "aa": True,
        "select": "val/acc",
        "metric": "test/acc",
    }
    if positive:
        d["arm_search"] = {"fgm": {"reg.fgm.eps": "loguniform(0.01, 30)"}}
    r = args.replicates
    if r:
        d["replicates"] = r
    reps = r or 1
    d["tune_seeds"] = [100 + k for k in range(reps)]
    d["seeds"] = list(range(reps * args.seeds_per_replicate))
    head = f"# calibration {'positive (FGM, dropout 0)' if positive else 'A/A'} study {i}\n"
    return head + yaml.safe_dump(d, sort_keys=False)


def run_study(args, i: int, positive: bool) -> dict | None:
    out = Path(args.out) / f"{'pos' if positive else 'aa'}-{i:02d}"
    out.mkdir(parents=True, exist_ok=True)
    f = out.parent / f"{out.name}.yaml"
    f.write_text(study_text(args, i, positive))
    done = out / "study.json"
    if not done.is_file():
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "runner.cli", "study", str(f), "--out", str(out)]
        cmd += ["--parallel", str(args.parallel), *args.overrides]
        r = subprocess.run(cmd, env=env, cwd=ROOT)
        if r.returncode != 0 or not done.is_file():
            print(f"study {out.name} failed (rc {r.returncode}); re-run to resume", flush=True)
            return None
    return json.loads(done.read_text())


def _arms(s: dict) -> dict:
    return s.get("arms") or next(iter(s["by_workload"].values()))["arms"]


def wilson(k: int, n: int) -> tuple[float, float]:
    if not n:
        return math.nan, math.nan
    z, p = 1.959964, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def z2_of(p) -> float | None:
    if p is None or not math.isfinite(p):
        return None
    return float(stats.norm.isf(max(p, 1e-300) / 2)) ** 2


def summarise(aa: list[dict], pos: list[dict]) -> dict:
    aa_rows = [_arms(s)["aa"].get("diff") or {} for s in aa]
    false = sum(_arms(s)["aa"]["verdict"] in ("better", "worse") for s in aa)
    z2 = [z for d in aa_rows if (z := z2_of(d.get("p"))) is not None]
    m = sum(z2) / len(z2) if z2 else math.nan
    sd = stats.tstd(z2) if len(z2) > 1 else math.nan
    h = stats.t.ppf(0.975, len(z2) - 1) * sd / math.sqrt(len(z2)) if len(z2) > 1 else math.nan
    det = sum(_arms(s)["fgm"]["verdict"] == "better" for s in pos)
    return {
        "aa_studies": len(aa),
        "false_verdicts": false,
        "false_rate": false / len(aa) if aa else math.nan,
        "false_ci95": wilson(false, len(aa)),
        "mean_z2": m,
        "mean_z2_ci95": (m - h, m + h),
        "positive_studies": len(pos),
        "detected": det,
        "detection_rate": det / len(pos) if pos else math.nan,
        "detection_ci95": wilson(det, len(pos)),
    }


def table(args, s: dict) -> str:
    f = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    design = (
        f"replicates {args.replicates or 'default'}, {args.seeds_per_replicate} seeds per "
        f"replicate, budget {args.budget}, {args.steps} steps"
    )
    return "\n".join(
        [
            f"Calibration benchmark ({design}):",
            "",
            "| A/A studies | false verdicts [95% CI] | mean z² [95% CI] | FGM studies | "
            "detected [95% CI] |",
            "|---|---|---|---|---|",
            f"| {s['aa_studies']} | {s['false_verdicts']} = {f(s['false_rate'])} "
            f"[{f(s['false_ci95'][0])}, {f(s['false_ci95'][1])}] | {s['mean_z2']:.2f} "
            f"[{s['mean_z2_ci95'][0]:.2f}, {s['mean_z2_ci95'][1]:.2f}] | "
            f"{s['positive_studies']} | {s['detected']} = {f(s['detection_rate'])} "
            f"[{f(s['detection_ci95'][0])}, {f(s['detection_ci95'][1])}] |",
        ]
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_out/calibration")
    ap.add_argument("--studies", type=int, default=20, help="A/A studies (and as many FGM)")
    ap.add_argument("--positive", type=int, default=None, help="FGM studies (default --studies)")
    ap.add_argument("--replicates", type=int, default=None, help="default: the study default")
    ap.add_argument("--seeds-per-replicate", type=int, default=2)
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4200)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE for every run (e.g. trainer.device)")
    args = ap.parse_args(argv)
    n_pos = args.studies if args.positive is None else args.positive
    aa = [s for i in range(args.studies) if (s := run_study(args, i, False))]
    pos = [s for i in range(n_pos) if (s := run_study(args, i, True))]
    summary = summarise(aa, pos)
    text = table(args, summary)
    out = Path(args.out)
    (out / "calibration.json").write_text(json.dumps({"args": vars(args), **summary}, indent=1))
    (out / "calibration.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
