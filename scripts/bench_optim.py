"""Optimizer step time, side by side: torch's AdamW against Lion's three forms (the CPU default,
chunks through a scratch buffer; foreach; the per-tensor loop) and Tiger, on the parameter
shapes of a model, the arms interleaved round by round, each arm's fastest round (a load only
adds time), as ratios to AdamW's.

    python scripts/bench_optim.py                       # MiniLM-L6's shapes (22.4M), 1 thread
    python scripts/bench_optim.py --shapes mlp --reps 20 --threads 2
    python scripts/bench_optim.py --device cuda         # on a GPU (Lion's default is foreach)

The step alone: gradients are fixed random tensors, no forward or backward.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runner/, from a source tree

SHAPES = {
    # MiniLM-L6 (hidden 384, 6 layers, vocabulary 30,522): embeddings, attention, FFN, norms
    "minilm": [(30522, 384), (512, 384)]
    + [(384, 384)] * 24
    + [(1536, 384), (384, 1536)] * 6
    + [(384,)] * 62
    + [(1536,)] * 6,
    # mnist1d's reference MLP 40-100-100-10
    "mlp": [(100, 40), (100,), (100, 100), (100,), (10, 100), (10,)],
}


def arms(device: str) -> dict:
    from runner.optim import Lion, Tiger

    return {
        "adamw (torch)": lambda ps: torch.optim.AdamW(ps, lr=3e-4, weight_decay=0.05),
        # what conf/optimizer/adamw.yaml's fused: auto picks where torch has the kernel
        "adamw fused": lambda ps: torch.optim.AdamW(ps, lr=3e-4, weight_decay=0.05, fused=True),
        "lion (default)": lambda ps: Lion(ps, lr=4e-5, weight_decay=0.9),
        "lion foreach": lambda ps: Lion(ps, lr=4e-5, weight_decay=0.9, foreach=True),
        "lion loop": lambda ps: Lion(ps, lr=4e-5, weight_decay=0.9, foreach=False),
        "tiger (default)": lambda ps: Tiger(ps, lr=4e-5, weight_decay=0.9),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", choices=sorted(SHAPES), default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10, help="rounds, every arm once a round")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    opts = {}
    for name, make in arms(a.device).items():
        ps = [torch.nn.Parameter(torch.randn(s, device=a.device) * 0.02) for s in SHAPES[a.shapes]]
        for p in ps:
            p.grad = torch.randn_like(p) * 1e-3
        opts[name] = make(ps)
        for _ in range(2):  # state allocated, kernels warm
            opts[name].step()
    best = {n: float("inf") for n in opts}
    for _ in range(a.reps):
        for name, opt in opts.items():
            sync()
            t = time.perf_counter()
            opt.step()
            sync()
            best[name] = min(best[name], time.perf_counter() - t)
    n = sum(torch.Size(s).numel() for s in SHAPES[a.shapes])
    base = best["adamw (torch)"]
    print(
        f"{a.shapes}: {n:,} parameters in {len(SHAPES[a.shapes])} tensors, {a.device}, "
        f"{a.threads} thread(s), torch {torch.__version__}, fastest of {a.reps} interleaved rounds"
    )
    print(f"{'optimizer':<18} {'ms per step':>12} {'× adamw':>9}")
    for name, s in best.items():
        print(f"{name:<18} {s * 1000:>12.2f} {s / base:>8.2f}×")


if __name__ == "__main__":
    main()
