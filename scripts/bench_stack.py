"""Stacked runs against one model per process: training samples per second per core (CPU) or per
device (CUDA) for K stacked members (runner.stack_run) and for one solo run, side by side in one
process, as ratios (docs/stack.md).

    OMP_NUM_THREADS=1 python scripts/bench_stack.py                       # CPU: K = 1, 4, 12, 32
    python scripts/bench_stack.py --ks 1,4,16,64,256 --device cuda        # a GPU (gpu_check.py)

Each figure is summary.json's `samples_per_sec` (training time only, evaluation excluded) of a
run of --steps steps on mnist1d (dropout 0: forward, backward and update only); a stack's is its
member's times K. One model per process on c cores gives c times one solo run's figure, so the
ratio stack / solo is the gain per core. The solo runs go first and last (their mean is the
reference) so that a drifting machine shows as two different solo figures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _overrides(model: str, steps: int, batch: int, device: str) -> list[str]:
    return [
        f"model={model}",
        "model.dropout=0",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        f"trainer.checkpoint_every={steps}",
        "trainer.log_every=50",
        f"trainer.batch_size={batch}",
        "trainer.progress=false",
        "trainer.keep_checkpoints=none",
        f"trainer.device={device}",
        "optimizer.lr=0.003",
    ]


def solo_sps(base: list[str], d: Path) -> float:
    from runner.config import compose
    from runner.main import run

    return run(compose(base), d)["samples_per_sec"]


def stack_sps(base: list[str], k: int, d: Path) -> float:
    from runner.config import compose
    from runner.stack_run import run_stack

    jobs = [(compose([*base, f"seed={i}"]), d / str(i)) for i in range(k)]
    s = run_stack(jobs)
    return k * s[0]["samples_per_sec"]


def bench(models: list[str], ks: list[int], steps: int, batch: int, device: str, limit: float):
    """The rows of the table; a stack not started within `limit` seconds is left out (the GPU
    check gives this script a slice of its bench time)."""
    import time

    t0, rows = time.monotonic(), []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for model in models:
            base = _overrides(model, steps, batch, device)
            first = solo_sps(base, t / f"{model}-solo-a")
            stacked = {
                k: stack_sps(base, k, t / f"{model}-{k}")
                for k in ks
                if time.monotonic() - t0 < limit
            }
            last = solo_sps(base, t / f"{model}-solo-b")
            ref = (first + last) / 2
            for k in stacked:
                rows.append(
                    {
                        "model": model,
                        "K": k,
                        "stack_sps": stacked[k],
                        "solo_sps": ref,
                        "solo_first_last": (first, last),
                        "ratio": stacked[k] / ref,
                    }
                )
    return rows


def table(rows: list[dict], args) -> str:
    import torch

    from runner.gitinfo import source_commit

    commit, dirty = source_commit()
    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    head = (
        f"Stacked runs vs one model per process: {datetime.date.today()}, commit {commit}"
        f"{' (dirty)' if dirty else ''}, {dev}, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.steps} steps of "
        f"batch {args.batch} per member\n\n"
        "| model | K | stacked samples/s | one model samples/s (first, last) | ratio |\n"
        "|---|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['K']} | {r['stack_sps']:.0f} | {r['solo_sps']:.0f} "
        f"({r['solo_first_last'][0]:.0f}, {r['solo_first_last'][1]:.0f}) | "
        f"{r['ratio']:.2f}x |\n"
        for r in rows
    )
    return head + body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mlp,cnn1d")
    ap.add_argument("--ks", default="1,4,12,32", help="members per stack, comma list")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    ap.add_argument("--limit", type=float, default=float("inf"), help="seconds for new stacks")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    rows = bench(
        args.models.split(","),
        [int(k) for k in args.ks.split(",")],
        args.steps,
        args.batch,
        args.device,
        args.limit,
    )
    md = table(rows, args)
    print(md)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n## Stacked runs (scripts/bench_stack.py)\n\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
