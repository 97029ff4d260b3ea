"""The reference for the engine-overhead benchmark: a minimal hand-written PyTorch training loop.

Same model and data as `tricks train OVERRIDES` (built by runner.build from the same config), same
batch size, fused AdamW with the config's hyperparameters, the same cosine schedule, the
engine's batch order (`engine_order`: text batches then have the same shapes in every arm), batches
gathered from device-resident tensors, text batches trimmed to their longest row (the engine's
dynamic padding). Nothing else: no accuracy or metric bookkeeping, no NaN check, no
hooks; the loss is read on the host once every `log_every` steps (a typical loop's logging).

    from hand_loop import hand_run
    hand_run(["model=cnn1d"], steps=60, log_every=15)  # {"sps": ..., "first_step_s": ...}
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F


def steady_sps(times: list[float], batch: int, skip: int) -> float:
    """Samples/s between the end of step `skip` and the last step (times: end of each step)."""
    n = len(times) - skip
    return n * batch / (times[-1] - times[skip - 1]) if n > 0 else float("nan")


def engine_order(cfg, data):
    """The engine's sequence of training rows, epoch after epoch (runner.data.batching.
    IndexBatcher: seeded permutations, length-grouped with dataset.padding=bucket), for the
    benchmark's other arms: every arm then trains on the same batches, so variable-shape text
    batches cost the same everywhere and only the framework differs. Yields (epoch, rows)."""
    from runner.data.batching import IndexBatcher

    b = IndexBatcher(data.train, cfg.trainer.batch_size, seed=cfg.seed, collate=data.collate)
    epoch = 0
    while True:
        yield epoch, b.host_order(epoch)[:b.steps_per_epoch * cfg.trainer.batch_size]
        epoch += 1


def hand_run(overrides: list[str], steps: int, log_every: int, on_first_step=None) -> dict:
    from runner import build
    from runner.config import compose

    cfg = compose(list(overrides))
    t0 = time.perf_counter()  # as for the engine: from the composed config to the first step
    torch.manual_seed(cfg.seed)
    data = build.data(cfg)
    model = build.model(cfg, data.info)
    o = cfg.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                            weight_decay=o.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    split, bs = data.train, cfg.trainer.batch_size
    n = len(split["y"])
    multiple = getattr(data.collate, "multiple", None)  # dynamic padding of text batches
    lengths = split["mask"].sum(1).numpy() if multiple else None
    order = engine_order(cfg, data)
    per_epoch, pos, perm = n // bs, n // bs, None
    model.train()
    times = []
    for step in range(steps):
        if pos == per_epoch:
            perm, pos = next(order)[1], 0
        idx = perm[pos * bs:(pos + 1) * bs]
        pos += 1
        batch = {k: v[idx] for k, v in split.items()}
        if multiple:
            full = batch["mask"].shape[1]
            w = min(full, -(-int(lengths[idx.numpy()].max()) // multiple) * multiple)
            batch = {k: (v[:, :w] if v.ndim == 2 and v.shape[1] == full else v)
                     for k, v in batch.items()}
        loss = F.cross_entropy(model(batch), batch["y"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0:
            loss.item()
        times.append(time.perf_counter())
        if step == 0 and on_first_step is not None:
            on_first_step()
    sps = steady_sps(times, bs, log_every)
    return {"sps": sps, "first_step_s": times[0] - t0, "step_ms": 1000 * bs / sps}
