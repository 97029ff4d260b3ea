"""The reference for the engine-overhead benchmark: a minimal hand-written PyTorch training loop.

Same model and data as `tricks train OVERRIDES` (built by runner.build from the same config), same
batch size, fused AdamW with the config's hyperparameters, the same cosine schedule, the
engine's batch order (`engine_order`: text batches then have the same shapes in every arm), batches
gathered from device-resident tensors, text batches trimmed to their longest row (the engine's
dynamic padding). Nothing else: no accuracy or metric bookkeeping, no NaN check, no
hooks; the loss is read on the host once every `log_every` steps (a typical loop's logging).
On a GPU it runs where the engine does, as a hand-written GPU loop would: the config's device and
precision (runner.device.plan: bf16 autocast, TF32), model and splits on the device.

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


class ModelClock:
    """Time spent inside the model's forward, the backward pass and the optimizer's update
    kernel, so that a step splits into that work, which every benchmark arm shares (same model,
    batches and fused AdamW kernel), and the rest: the framework's own work per step (batching,
    collation, loss and metric bookkeeping, hooks, scheduler, callbacks).

    While a clock is entered: every model built by `runner.build.model` (the engine's, the hand
    loop's and the peers') gets forward pre/post hooks; `torch.autograd.backward` (what
    `Tensor.backward` calls) and `torch.optim.adam.adam` (the update AdamW's `step` calls,
    after its own parameter bookkeeping) are wrapped. Nested intervals count once (a forward
    inside a backward; Lightning's closure runs forward and backward inside `optimizer.step`, and
    only its update kernel is timed, not the closure). Each arm calls `stamp(times)` at the end
    of a step, which also records the clock's running total. CPU only: on CUDA the kernels run
    asynchronously and these intervals would time their launches.

        with ModelClock() as clock:
            r = hand_run(...)            # stamps every step
        r.update(clock.split(r["times"], skip=15))   # model_ms, framework_ms per steady step
    """

    active: ModelClock | None = None

    def __init__(self, now=time.perf_counter):
        self.now = now  # the clock of the intervals and of `stamp` (a fake one in the tests)
        self.total, self.marks, self._depth, self._t0 = 0.0, [], 0, 0.0

    def _enter(self, *_):
        if self._depth == 0:
            self._t0 = self.now()
        self._depth += 1

    def _exit(self, *_):
        self._depth -= 1
        if self._depth == 0:
            self.total += self.now() - self._t0

    def _timed(self, fn):
        def wrapper(*a, **k):
            self._enter()
            try:
                return fn(*a, **k)
            finally:
                self._exit()

        return wrapper

    def __enter__(self):
        import importlib

        import torch.autograd

        from runner import build

        adam = importlib.import_module("torch.optim.adam")  # (torch.optim deletes the name)
        build_model = build.model

        def model(*a, **k):
            m = build_model(*a, **k)
            m.register_forward_pre_hook(self._enter)
            m.register_forward_hook(self._exit)
            return m

        self._saved = [
            (build, "model", build.model),  # what __exit__ puts back
            (torch.autograd, "backward", torch.autograd.backward),
            (adam, "adam", adam.adam),
        ]
        build.model = model
        torch.autograd.backward = self._timed(torch.autograd.backward)
        adam.adam = self._timed(adam.adam)
        ModelClock.active = self
        return self

    def __exit__(self, *exc):
        for owner, name, orig in self._saved:
            setattr(owner, name, orig)
        ModelClock.active = None

    def split(self, times: list[float], skip: int) -> dict:
        """Per steady step (after step `skip`), ms: inside the model's forward, backward and
        update (`model_ms`) and everything else (`framework_ms`)."""
        n = len(times) - skip
        if n <= 0 or len(self.marks) != len(times):
            return {}
        wall = (times[-1] - times[skip - 1]) / n
        model = (self.marks[-1] - self.marks[skip - 1]) / n
        return {"model_ms": 1000 * model, "framework_ms": 1000 * (wall - model)}


def stamp(times: list[float]) -> None:
    """End of a training step: its time, and the running total of an active ModelClock."""
    clock = ModelClock.active
    times.append(time.perf_counter() if clock is None else clock.now())
    if clock is not None:
        clock.marks.append(clock.total)


def step_result(times: list[float], batch: int, skip: int, t0: float) -> dict:
    """What every benchmark arm returns: steady samples/s and ms per step, time to the first
    step (from t0), and the step end times (for ModelClock.split)."""
    sps = steady_sps(times, batch, skip)
    return {
        "sps": sps,
        "first_step_s": times[0] - t0,
        "step_ms": 1000 * batch / sps,
        "times": times,
    }


def engine_order(cfg, data):
    """The engine's sequence of training rows, epoch after epoch (runner.data.batching.
    IndexBatcher: seeded permutations, length-grouped with dataset.padding=bucket), for the
    benchmark's other arms: every arm then trains on the same batches, so variable-shape text
    batches cost the same everywhere and only the framework differs. Yields (epoch, rows)."""
    from runner.data.batching import IndexBatcher

    b = IndexBatcher(data.train, cfg.trainer.batch_size, seed=cfg.seed, collate=data.collate)
    epoch = 0
    while True:
        yield epoch, b.host_order(epoch)[: b.steps_per_epoch * cfg.trainer.batch_size]
        epoch += 1


def hand_run(overrides: list[str], steps: int, log_every: int, on_first_step=None) -> dict:
    from runner import build
    from runner.config import compose

    cfg = compose(list(overrides))
    t0 = time.perf_counter()  # as for the engine: from the composed config to the first step
    torch.manual_seed(cfg.seed)
    data = build.data(cfg)
    model = build.model(cfg, data.info)
    p = device_plan(cfg)
    model = model.to(p.device)
    o = cfg.optimizer
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=o.lr,
        betas=tuple(o.betas),
        eps=o.eps,
        weight_decay=o.weight_decay,
        fused=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    split, bs = data.train, cfg.trainer.batch_size
    n = len(split["y"])
    multiple = getattr(data.collate, "multiple", None)  # dynamic padding of text batches
    lengths = split["mask"].sum(1).numpy() if multiple else None
    split = {k: v.to(p.device) for k, v in split.items()}
    order = engine_order(cfg, data)
    per_epoch, pos, perm = n // bs, n // bs, None
    model.train()
    times = []
    for step in range(steps):
        if pos == per_epoch:
            perm, pos = next(order)[1], 0
        idx = perm[pos * bs : (pos + 1) * bs]
        pos += 1
        batch = {k: v[idx] for k, v in split.items()}
        if multiple:
            full = batch["mask"].shape[1]
            w = min(full, -(-int(lengths[idx.numpy()].max()) // multiple) * multiple)
            batch = {
                k: (v[:, :w] if v.ndim == 2 and v.shape[1] == full else v) for k, v in batch.items()
            }
        with autocast(p):
            loss = F.cross_entropy(model(batch), batch["y"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0:
            loss.item()
        stamp(times)
        if step == 0 and on_first_step is not None:
            on_first_step()
    return step_result(times, bs, log_every, t0)


def device_plan(cfg):
    """The engine's device and precision for this config (TF32 switched on where it plans it)."""
    from runner.device import plan, setup_backends

    p = plan(str(cfg.trainer.device), str(cfg.trainer.precision))
    setup_backends(p)
    return p


def autocast(p):
    from runner.device import autocast as ac

    return ac(p)
