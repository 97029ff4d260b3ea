"""Simulated calibration of the study protocol from the committed studies' recorded variances.

NOT the calibration benchmark of issue 32 (>= 20 real A/A studies through the wired protocol):
a simulation, from figures the committed studies recorded, of what the verdict's test does at
R replicates x S confirmation seeds, to propose the defaults until that benchmark runs.

From every committed trick-vs-baseline comparison (experiments/*/study*/study.json, one tuning
each) it takes two variance components of the difference arm - baseline:

- within (seeds): the variance of the per-seed paired differences of the confirmation runs;
- between (the tuning's choice): a parametric bootstrap of the selection. Each arm's trials'
  select values (validation, one tune seed) are taken as the configs' true scores, shrunk
  towards their mean by the share that is seed noise (empirical Bayes: the spread among configs
  minus the seed variance, over the spread); a re-tuning adds fresh seed noise (the arm's
  confirmation sd over sqrt(tune seeds)) to every score and keeps the best; the chosen config's
  true score over 2,000 re-tunings, the arm's minus the baseline's (tuned independently), is
  the distribution of the difference's between-replicate offset b_r (lumpy and skewed: a choice
  among a few configs), its variance the between component. It omits the split's variance (the
  recorded studies have one split) and the shared scramble (which correlates the arms'
  choices): both change it, in opposite directions.

Then, for each comparison with no true effect (an A/A arm), it simulates the verdict's test:
R = 1, today's seed-level paired t on S seeds (its CI is of that tuning's difference); R >= 2,
the t-test on the R replicate means (runner.stats.compare_replicated). Reported per (R, S): the
false-verdict rate at alpha 0.05 and the mean of z^2 (z from each two-sided p; 1 when
calibrated), averaged over the comparisons, the median MDE (points, alpha 0.05, 80% power)
from the components, and the runs one arm costs (R tunings of BUDGET trials, plus R x S).
The seeds' noise is simulated normal; b_r is drawn from the bootstrap's own distribution, not a
normal one, so the rows R >= 2 show how the replicate t holds up when the tuning's noise is
lumpy. Run: `python scripts/sim_calibration.py [--sims N] [--seed N]`.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.stats import mde_replicated  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPLICATES = (1, 2, 3, 4, 5)
SEEDS = (2, 3, 5, 10)
BUDGET = 12  # trials per arm and replicate, one tune seed each: most committed studies
DRAWS = 2000  # re-tunings per arm in the selection's bootstrap


def choice_draws(trials: list[dict], sd: float, tune_seeds: int, higher: bool, rng):
    """The chosen config's true score over DRAWS re-tunings (parametric bootstrap), centred:
    its distribution, not only its variance (a choice between a few configs is lumpy)."""
    mu = np.array([t["select_value"] for t in trials if t.get("select_value") is not None])
    if len(mu) < 2 or not math.isfinite(sd):
        return None
    noise = sd**2 / tune_seeds
    spread = mu.var(ddof=1)
    keep = max(0.0, spread - noise) / spread if spread > 0 else 0.0
    true = mu.mean() + keep * (mu - mu.mean())
    scores = true + math.sqrt(noise) * rng.standard_normal((DRAWS, len(true)))
    chosen = true[scores.argmax(1) if higher else scores.argmin(1)]
    return chosen - chosen.mean()


def components(rng) -> list[dict]:
    """One record per committed comparison: study, workload, arm, within and between (the
    metric's units)."""
    out = []
    for f in sorted(glob.glob(str(ROOT / "experiments/*/study*/study.json"))):
        s = json.loads(Path(f).read_text())
        higher = s.get("select_higher_better", s.get("higher_better", True))
        nt = len(s.get("tune_seeds") or [1])
        for w, rec in (s.get("by_workload") or {"-": s}).items():
            arms, base = rec["arms"], s["baseline"]
            b = arms.get(base, {}).get("final") or {}
            bv = dict(zip(b.get("seeds", []), b.get("values", [])))
            for a, r in arms.items():
                if a == base or not r.get("diff") or r.get("equal_compute_of"):
                    continue
                fa = r["final"]
                d = [v - bv[k] for k, v in zip(fa["seeds"], fa["values"]) if k in bv]
                if len(d) < 3 or np.var(d) == 0:
                    continue  # an arm identical to the baseline (a null control) tunes alike
                sd_a, sd_b = np.std(fa["values"], ddof=1), np.std(b["values"], ddof=1)
                da = choice_draws(r["trials"], sd_a, nt, higher, rng)
                db = choice_draws(arms[base]["trials"], sd_b, nt, higher, rng)
                if da is None or db is None:
                    continue
                draws = da - rng.permutation(db)  # the arms tuned independently
                out.append(
                    {
                        "study": Path(f).parent.parent.name,
                        "workload": w,
                        "arm": a,
                        "within": float(np.var(d, ddof=1)),
                        "between": float(draws.var()),
                        "draws": draws,
                    }
                )
    return out


def null_rates(draws, vw: float, r: int, s: int, sims: int, rng) -> tuple[float, float]:
    """(false-verdict rate, mean z^2) of the test at R x S with no true effect, from the
    sufficient statistics: replicate means b_r + N(0, vw / S), b_r drawn from `draws` (the
    tuning's centred difference, as the bootstrap gave it); R = 1 also the seeds' s^2."""
    means = rng.choice(draws, (sims, r)) + math.sqrt(vw / s) * rng.standard_normal((sims, r))
    if r == 1:  # the seed-level paired t within the one tuning
        s2 = vw * rng.chisquare(s - 1, sims) / (s - 1)
        t, df = means[:, 0] / np.sqrt(s2 / s), s - 1
    else:
        t, df = means.mean(1) / (means.std(1, ddof=1) / math.sqrt(r)), r - 1
    p = 2 * sps.t.sf(np.abs(t), df)
    z = sps.norm.isf(np.clip(p, 1e-300, 1) / 2)
    return float(np.mean(p < 0.05)), float(np.mean(z**2))


def table(comps: list[dict], sims: int, rng) -> list[str]:
    """The markdown table: one row per R, one column group per S."""
    head = "| R | " + " | ".join(f"S = {s}: false / mean z² / MDE / runs" for s in SEEDS) + " |"
    lines = [head, "|---|" + "---|" * len(SEEDS)]
    for r in REPLICATES:
        cells = []
        for s in SEEDS:
            rates = [null_rates(c["draws"], c["within"], r, s, sims, rng) for c in comps]
            m = [mde_replicated(c["between"], c["within"], r, s) for c in comps]
            fr, z2 = np.mean([x[0] for x in rates]), np.mean([x[1] for x in rates])
            runs = r * (BUDGET + s)  # per arm: R tunings of BUDGET one-seed trials + R x S
            cells.append(f"{100 * fr:.1f}% / {z2:.2f} / {100 * np.nanmedian(m):.2f} / {runs}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=4000, help="simulated A/A studies per cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    comps = components(rng)
    sb = np.sqrt([c["between"] for c in comps]) * 100
    sw = np.sqrt([c["within"] for c in comps]) * 100
    share = [c["between"] / (c["between"] + c["within"] / 10) for c in comps]
    print(f"{len(comps)} committed comparisons; sd between (tuning) median {np.median(sb):.2f}")
    print(f"points (IQR {np.percentile(sb, 25):.2f}-{np.percentile(sb, 75):.2f}), sd within")
    print(f"(seed) median {np.median(sw):.2f} points; the tuning's share of a 10-seed mean's")
    print(f"variance: median {np.median(share):.2f}")
    print()
    print("\n".join(table(comps, args.sims, rng)))


if __name__ == "__main__":
    main()
