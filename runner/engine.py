"""The one training loop. It names no trick: tricks plug in through the hooks of runner.hooks.

Read `fit` top to bottom: for each optimizer step, `accum_steps` micro-batches run through the
loss chain (tricks' `loss` hooks around `State.forward`) and the backward chain (tricks'
`backward` hooks around `State.backward`); then AMP unscaling, `on_grads` hooks, the optimizer and
scheduler steps, `on_step_end` hooks. Train metrics stay on the device and are read once every
`log_every` steps: the only host syncs of the loop (on CUDA).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
import torch.utils.deterministic as det
from omegaconf import DictConfig, OmegaConf

from runner import device as devmod
from runner import losses
from runner.data.batching import IndexBatcher, eval_batches
from runner.dist import agree_stop, broadcast_flag, mean_across, request_stop, unwrap
from runner.early_stop import evaluations, stop_step
from runner.errors import ConfigError, TrainingFailed
from runner.hooks import Out, overrides

#: pending train/acc logits are counted early past this many elements (memory stays small)
HITS_CAP = 1 << 20

#: metric names logged without the train/ prefix (the run-directory contract)
TOP_LEVEL_METRICS = ("grad_norm", "lr", "samples_per_sec")


@dataclass
class State:
    """Everything the loop and the tricks share. Tricks read and write it through the methods
    below; the loop owns `step`, `epoch`, `micro_pos`."""

    cfg: object  # the trainer config node
    plan: devmod.Plan
    model: torch.nn.Module  # what is called: maybe compiled / DDP-wrapped
    raw_model: torch.nn.Module  # the plain module: state_dict, tricks' parameter access
    optimizer: torch.optim.Optimizer
    scheduler: object
    tricks: list
    data: object
    batcher: IndexBatcher
    total_steps: int
    seed: int = 0
    loss: object = None  # the `loss` group's object (runner.losses); None: cross-entropy
    scaler: object = None
    step: int = 0
    epoch: int = 0
    micro_pos: int = 0  # micro-batches consumed in the current epoch
    rows: list = field(default_factory=list)  # metrics.jsonl rows so far (checkpointed)
    best: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    samples_seen: int = 0
    nan_skips: int = 0
    stop_requested: str | None = None
    stopped_early: int | None = None  # the step trainer.patience stopped the run at
    is_main: bool = True  # rank 0 under DDP
    sync_grads: bool = True  # False inside DDP no_sync (accumulation micro-batches)
    world_size: int = 1  # DDP processes (runner.dist); batch_size is per process
    _stop_pending: str | None = None  # a signal seen under DDP, until the ranks agree
    _grad_norm: torch.Tensor | None = None
    _finite_buf: tuple | None = None  # (found_inf, one) reused by the per-step finite check
    _acc: dict = field(default_factory=dict)
    _hits: list = field(default_factory=list)  # (logits, y, labeled) not yet counted
    _hits_size: int = 0  # elements of logits in _hits
    _params: list | None = None
    _keep_embed: bool = False
    _tc: object = None  # plain copy of cfg (see tc)
    _one_group: bool | None = None  # all params dense, on one device, of one dtype
    _no_sync: object = None  # DDP's model.no_sync, else None (set by fit)
    #: K runs trained as one stacked model (runner.stack_run.StackState): the loss, metrics and
    #: grad norm are [K] vectors (acc_shape), batches [K, B, ...] (rows on dim batch_dim), and the
    #: few steps that read per-member figures call its methods
    stacked: bool = False
    acc_shape: tuple = ()
    batch_dim: int = 0

    def __post_init__(self):
        if self.loss is None:
            self.loss = losses.default()

    @property
    def tc(self):
        """The trainer config as plain Python values: a DictConfig attribute read costs
        microseconds and the loop makes several per step. Refreshed at the start of `fit`."""
        if self._tc is None:
            c = self.cfg
            self._tc = (
                SimpleNamespace(**OmegaConf.to_container(c, resolve=True))
                if isinstance(c, DictConfig)
                else c
            )
        return self._tc

    # -- what tricks use -------------------------------------------------------------------
    @property
    def params(self) -> list:
        if self._params is None:
            self._params = [p for p in self.raw_model.parameters() if p.requires_grad]
        return self._params

    def grads(self) -> list:
        return [p.grad for p in self.params if p.grad is not None]

    def grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the current gradients, computed once per step (cached)."""
        if self._grad_norm is None:
            g = self.grads()
            if g and self._one_group is None:
                d, t = g[0].device, g[0].dtype
                self._one_group = d.type in ("cpu", "cuda") and all(
                    x.device == d and x.dtype == t and x.layout == torch.strided for x in g
                )
            if not g:
                self._grad_norm = torch.zeros((), device=self.plan.device)
            elif self._one_group:  # get_total_norm's own math minus its grouping (half the cost)
                self._grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g)))
            else:
                self._grad_norm = torch.nn.utils.get_total_norm(g)
        return self._grad_norm

    def norm(self, tensors: list) -> torch.Tensor:
        """The L2 norm over `tensors` (a stacked run: each member's, [K])."""
        return torch.nn.utils.get_total_norm(tensors)

    def autocast(self):
        return devmod.autocast(self.plan)

    def criterion(self, logits, y, labeled=None):
        """The supervised loss (state.loss); with `labeled` (semi-supervised batches) the mean
        over the labelled rows only."""
        return self.loss(logits, y, labeled)

    def forward(self, batch: dict, delta=None, keep_embed: bool = False) -> Out:
        """The plain forward + the supervised loss (state.loss), optionally with `delta` added to
        the embedding. Tricks call it for their extra passes (adversarial, virtual adversarial).
        A batch may carry its own embedding offset under the key ``delta`` (a loss trick's input
        noise); it is added too. The returned Out records the batch it ran on (``Out.batch``)."""
        own = batch.get("delta")
        if own is not None:
            delta = own if delta is None else own + delta
        with self.autocast():
            if keep_embed:
                logits, h = self.model(batch, delta=delta, return_embed=True)
            else:
                logits, h = self.model(batch, delta=delta), None
        return Out(
            loss=self.criterion(logits, batch["y"], batch.get("labeled")),
            logits=logits,
            y=batch["y"],
            embed=h,
            batch=batch,
        )

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate one micro-batch loss, scaled for accumulation (and fp16)."""
        k = self.tc.accum_steps
        if k != 1:  # (x / 1 is x: no extra op and autograd node per pass)
            loss = loss / k
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def no_sync(self):
        """Context for an extra forward+backward whose parameter gradients need no all-reduce
        yet (DDP decides at forward time, so wrap both). A no-op without DDP. See runner.dist."""
        ns = getattr(self.model, "no_sync", None)
        return ns() if ns is not None else contextlib.nullcontext()

    def log_scalar(self, name: str, value: torch.Tensor) -> None:
        """Average `value` (a 0-d tensor, no sync) over the log interval, logged as `name`."""
        s = self._acc.setdefault(name, [torch.zeros(self.acc_shape, device=self.plan.device), 0])
        s[0] += value.detach().float()
        s[1] += 1

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def optimizer_steps_per_epoch(self) -> int:
        """Micro-batches per epoch over accum_steps: the loop's epoch and summary.json's."""
        return self.batcher.steps_per_epoch // self.tc.accum_steps

    def add_hits(self, out: Out) -> None:
        """Queue a micro-batch's (logits, y, labeled) for the train metrics (count_hits)."""
        logits = out.logits.detach()
        b = out.batch if out.batch is not None else {}
        self._hits.append((logits, out.y, b.get("labeled")))
        self._hits_size += logits.numel()
        if self._hits_size > HITS_CAP:
            self.count_hits()

    def count_hits(self) -> None:
        """Fold the pending (logits, y, labeled) of this log interval into the train metric
        counters (state.loss.counts: train/acc, and train/f1 multi-label): one pass over all of
        them instead of small kernels per step. Counts are integers, so when this runs (log step,
        checkpoint, memory cap) never changes a figure. Semi-supervised: labelled rows only."""
        if not self._hits:
            return
        cat = lambda i: (
            torch.cat([h[i] for h in self._hits]) if len(self._hits) > 1 else self._hits[0][i]
        )
        lab = cat(2) if self._hits[0][2] is not None else None
        c = self._acc.get("__counts")
        counts = self.loss.counts(cat(0), cat(1), lab)
        if c is None or not torch.is_tensor(c[0]) or c[0].shape != counts.shape:
            c = self._acc["__counts"] = [torch.zeros_like(counts), 0]
        c[0] += counts
        c[1] += 1
        self._hits.clear()
        self._hits_size = 0

    def eval_model(self):
        for t in self.tricks:
            m = t.eval_model(self)
            if m is not None:
                return m
        return None


# -- the chains ------------------------------------------------------------------------------


def _base_loss(state: State, batch: dict) -> Out:
    return state.forward(batch, keep_embed=state._keep_embed)


def _base_backward(state: State, out: Out, batch: dict) -> None:
    state.backward(out.loss)


def build_chains(state: State):
    """Compose the tricks' loss and backward hooks like middleware: the lowest `order` is the
    outermost wrapper. Only tricks that override a hook take part, so an unused hook costs
    nothing."""
    loss_fn = partial(_base_loss, state)
    for t in reversed([t for t in state.tricks if overrides(t, "loss")]):
        loss_fn = partial(t.loss, state, next=loss_fn)
    bwd_fn = partial(_base_backward, state)
    for t in reversed([t for t in state.tricks if overrides(t, "backward")]):
        bwd_fn = partial(_wrap_backward, t, state, bwd_fn)
    return loss_fn, bwd_fn


def _wrap_backward(trick, state, inner, out, batch):
    trick.backward(state, out, batch, inner)


def hooks(state: State, name: str) -> list:
    return [t for t in state.tricks if overrides(t, name)]


# -- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: dict, state: State) -> dict:
    """Mean loss (state.loss) and its metrics over a whole split (acc; multi-label also f1,
    f1_macro), one host sync at the end."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=state.plan.device, dtype=torch.float64)
    counts = None
    n = 0
    collate = getattr(state.data, "collate", None)
    device = getattr(state.data, "device", None)  # streamed data: batches copied there
    for batch in eval_batches(split, state.cfg.eval_batch_size, collate, device):
        with state.autocast():
            logits = model(batch)
        loss += state.loss.sum(logits, batch["y"]).double()
        c = state.loss.counts(logits, batch["y"])
        counts = c if counts is None else counts + c
        n += len(batch["y"])
    model.train(was_training)
    figures = (
        state.loss.metrics(counts) if counts is not None else {m: 0.0 for m in state.loss.figures}
    )
    return {"loss": loss.item() / max(n, 1), **figures}


def run_eval(state: State, splits=("val", "test")) -> dict:
    if state.stacked:  # each member evaluated on every split (runner.stack_run)
        return state.run_member_eval()
    row = {}
    ev = state.eval_model()

    model = unwrap(state.model)  # rank 0 evaluates alone: no DDP forward (it may broadcast)
    main = ev if ev is not None else model
    for split in splits:
        if split == "test" and not _test_due(state, row):
            break
        r = evaluate(main, getattr(state.data, split), state)
        row.update({f"{split}/{k}": v for k, v in r.items()})
        if ev is not None:  # the raw weights too, so the trick's effect is visible
            r = evaluate(model, getattr(state.data, split), state)
            row.update({f"{split}/raw/{k}": v for k, v in r.items()})
    return row


def _test_due(state: State, val_row: dict) -> bool:
    """trainer.eval_test=best: the test split only where the selection metric improves (the
    summary's test figures are read there) and at the last step (its final/ figures); the
    same numbers as `every` for less evaluation, and sparse test curves."""
    if state.tc.eval_test == "every" or state.step >= state.total_steps:
        return True
    if state.stopped_early is not None:  # the last evaluation: its final/ figures
        return True
    return _improves(state, val_row)


def _improves(state: State, row: dict) -> bool:
    key = state.loss.select
    if key not in row:
        return False
    return not (state.best and key in state.best and row[key] <= state.best[key])


# -- the loop --------------------------------------------------------------------------------


def _reset_acc(state: State):
    dev = state.plan.device
    state._acc = {"__loss": [torch.zeros(state.acc_shape, device=dev), 0]}  # "__counts": later


def _read_acc(state: State) -> dict:
    """One host sync: turn the interval's device accumulators into floats."""
    if state.stacked:
        return state.read_member_acc()
    state.count_hits()
    names = [k for k in state._acc if k != "__counts"]
    counts = state._acc.get("__counts")
    parts = [state._acc[k][0].double().reshape(1) for k in names]
    if counts is not None:  # the metric counts ride in the same read (and all-reduce)
        parts.append(counts[0].double())
    vals = torch.cat(parts)
    if state.world_size > 1:  # the mean over ranks (same keys and counts on every rank)
        vals = mean_across(vals, state.world_size)
    vals = vals.tolist()  # the one host read
    out = {}
    if counts is not None:  # ratios of counts: the mean over ranks gives the global figures
        out.update({f"train/{m}": v for m, v in state.loss.metrics(vals[len(names) :]).items()})
    vals = vals[: len(names)]
    for k, v in zip(names, vals):
        cnt = state._acc[k][1]
        if k == "__loss":
            out["train/loss"] = v / max(cnt, 1)
        else:
            key = k if ("/" in k or k in TOP_LEVEL_METRICS) else f"train/{k}"
            out[key] = v / max(cnt, 1)
    return out


def _all_finite(state: State, step_loss: torch.Tensor) -> bool:
    """Are this step's loss and (without a GradScaler) its gradients finite? One host read.
    Reuses this step's grad norm when it was computed (log steps, clipping); otherwise one fused
    foreach pass over the gradients and the loss, the kernel GradScaler uses (it multiplies by
    1.0, which changes no value): several times cheaper than a norm or per-tensor checks on CPU."""
    if state.scaler is not None:  # fp16: the GradScaler handles overflowing gradients itself
        return bool(torch.isfinite(step_loss))
    if state._grad_norm is not None:
        return bool(torch.isfinite(step_loss) & torch.isfinite(state._grad_norm))
    grads = state.grads()
    buf = state._finite_buf
    dev = step_loss.device
    if buf is None or buf[0].device != dev:
        buf = state._finite_buf = (torch.zeros(1, device=dev), torch.ones(1, device=dev))
    found, one = buf
    found.zero_()
    try:
        torch._amp_foreach_non_finite_check_and_unscale_([*grads, step_loss], found, one)
    except (RuntimeError, TypeError, AttributeError):  # mixed devices/dtypes: the plain way
        return bool(torch.isfinite(step_loss) & torch.isfinite(state.grad_norm()))
    return found.item() == 0


def _check_finite(state: State, step_loss: torch.Tensor, parts: dict, full: bool) -> bool:
    """Is this step's loss finite, and with `full` (log steps, on_nan=skip) its gradients too?
    One host read. The loss-only check is the CPU plan's per-step check: a read of a 0-d CPU
    tensor, no kernel. Non-finite: count a skip (on_nan=skip) or raise TrainingFailed naming the
    step, the loss parts and the active tricks."""
    if state.stacked:  # per member: a failed member stops, the others go on
        return state.check_members_finite(step_loss, full)
    if _all_finite(state, step_loss) if full else math.isfinite(step_loss.item()):
        return True
    if state.cfg.on_nan == "skip":
        state.nan_skips += 1
        return False
    loss = step_loss.item() / state.cfg.accum_steps
    what = (
        f"non-finite loss ({loss})"
        if not math.isfinite(loss)
        else f"non-finite gradients (grad norm {state.grad_norm().item()}, loss {loss:.6g})"
    )
    where = f"step {state.step + 1}"
    if state.cfg.on_nan != "skip" and not (
        state.plan.finite_check_each_step and not math.isfinite(loss)
    ):
        where += (
            " (or earlier: checked on log steps)"
            if not state.plan.finite_check_each_step
            else " (or earlier: gradients are checked on log steps)"
        )
    parts_s = ", ".join(f"{k}={v.item():.6g}" for k, v in parts.items()) or "none"
    names = ", ".join(t.name for t in state.tricks) or "none"
    raise TrainingFailed(
        f"{what} at {where}; loss parts: {parts_s}; active tricks: {names}; "
        "lower optimizer.lr, clip gradients (clip=norm), or set "
        "trainer.on_nan=skip"
    )


def train_step(state: State, micro_batches: list, loss_fn, bwd_fn, log_now: bool) -> None:
    opt = state.optimizer
    step_loss = None  # summed over micro-batches
    last = len(micro_batches) - 1
    parts = {}  # this step's loss parts (summed over micro-batches), named if the loss goes NaN
    no_sync = state._no_sync
    loss_acc = state._acc["__loss"]
    add_hits = state.add_hits
    for i, batch in enumerate(micro_batches):
        state.sync_grads = i == last
        if i < last and no_sync is not None:  # DDP: all-reduce on the last micro-batch only
            with no_sync():
                out = loss_fn(batch)
                bwd_fn(out, batch)
        else:
            out = loss_fn(batch)
            bwd_fn(out, batch)
        loss = out.loss.detach().float()
        step_loss = loss if step_loss is None else step_loss + loss
        loss_acc[0] += loss
        loss_acc[1] += 1
        add_hits(out)  # train/acc (f1): counted on log steps (count_hits)
        for k, v in out.parts.items():
            state.log_scalar(k, v)
            parts[k] = parts[k] + v.detach() if k in parts else v.detach()
    rows = sum(b["y"].shape[state.batch_dim] for b in micro_batches)
    state.samples_seen += rows * state.world_size

    if state.scaler is not None:
        state.scaler.unscale_(opt)
    state._grad_norm = None
    if log_now:
        state.log_scalar("grad_norm", state.grad_norm())  # before any clipping
    ok = True
    full = log_now or state.tc.on_nan == "skip"  # skip must decide before the update
    if full or state.plan.finite_check_each_step:
        ok = _check_finite(state, step_loss, parts, full)
    for t in state._on_grads:
        t.on_grads(state)
    if ok:
        if state.scaler is not None:
            state.scaler.step(opt)
            state.scaler.update()
        else:
            opt.step()
    opt.zero_grad(set_to_none=True)
    if ok:
        state.scheduler.step()
    else:  # a skipped step keeps its slot of the schedule; torch warns when it was the first
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step")
            state.scheduler.step()
    state.step += 1
    for t in state._on_step_end:
        t.on_step_end(state)


def _eval_due(state: State) -> bool:
    every = state.tc.eval_every
    if state.step >= state.total_steps:
        return True
    if every:
        return state.step % every == 0
    return state.micro_pos == 0  # an epoch just ended


def _prepare(state: State):
    """Before the first step of `fit`: the chains, the hook lists, the accumulators. Returns
    (loss_fn, bwd_fn, optimizer steps per epoch)."""
    state._tc = None  # re-read from the config by the next state.tc (here, just below)
    spe = state.optimizer_steps_per_epoch
    if spe == 0:
        raise ConfigError(
            "trainer.accum_steps",
            f"batch_size x accum_steps exceeds the train split ({state.batcher.n} samples)",
        )
    loss_fn, bwd_fn = build_chains(state)
    state._on_grads = hooks(state, "on_grads")
    state._on_step_end = hooks(state, "on_step_end")
    state._keep_embed = any(t.needs_embed_grad for t in state.tricks)
    state._no_sync = getattr(state.model, "no_sync", None)
    if not state._acc:
        _reset_acc(state)
    patience = getattr(state.tc, "patience", None)  # (a trainer node from before the key)
    if patience:  # a resumed run that had stopped early stays stopped (its rows say so)
        state.stopped_early = stop_step(
            evaluations(state.rows, state.loss.select), patience, state.tc.min_delta
        )
    state.model.train()
    return loss_fn, bwd_fn, spe


class _Clock:
    """Training time without evaluation (`state.train_seconds`) and samples/s per log interval."""

    def __init__(self, state: State):
        self.t, self.samples = time.perf_counter(), state.samples_seen

    def interval(self, state: State) -> dict:
        """A log step: lr and samples/s since the last one."""
        now = time.perf_counter()
        state.train_seconds += now - self.t
        row = {
            "lr": state.lr,
            "samples_per_sec": (state.samples_seen - self.samples) / max(now - self.t, 1e-9),
        }
        self.t, self.samples = now, state.samples_seen
        return row

    def pause(self, state: State) -> None:
        state.train_seconds += time.perf_counter() - self.t

    def resume(self) -> None:
        self.t = time.perf_counter()


def _step_row(state: State, clock: _Clock, log_now: bool, best_fn) -> dict:
    """After an optimizer step: the train metrics (log steps) and the evaluation (when due)."""
    row = {}
    if log_now:
        row.update(_read_acc(state))
        _reset_acc(state)
        row.update(clock.interval(state))
    if state.world_size > 1 and log_now:  # a signal on any rank stops every rank
        agree_stop(state)
    due = _eval_due(state)
    if due and state.is_main:  # rank 0 evaluates alone
        clock.pause(state)
        row.update(run_eval(state))
        if best_fn is not None:
            best_fn(state, row)
        clock.resume()
    if due and getattr(state.tc, "patience", None):
        _early_stop(state, row, clock)
    return row


def _early_stop(state: State, row: dict, clock: _Clock) -> None:
    """trainer.patience: stop at this evaluation if it exhausts the patience (runner.early_stop).
    Rank 0 decides, as it alone evaluates, and every rank follows (a collective under DDP). The
    stopping evaluation gets the test split too (trainer.eval_test=best skips it otherwise)."""
    key, tc = state.loss.select, state.tc
    stop = state.is_main and (
        stop_step(
            evaluations([*state.rows, {**row, "step": state.step}], key), tc.patience, tc.min_delta
        )
        == state.step
    )
    if state.world_size > 1:
        stop = broadcast_flag(stop, state)
    if not stop:
        return
    state.stopped_early = state.step
    if state.is_main and not any(k.startswith("test/") for k in row):
        clock.pause(state)
        row.update(run_eval(state, splits=("test",)))
        clock.resume()


def _emit(state: State, row: dict, spe: int, logger, progress) -> None:
    row = {"step": state.step, "epoch": round(state.step / spe, 4), **row}
    state.rows.append(row)
    if state.is_main:
        logger.log(row)
    if progress is not None:
        progress.update(state.step, row)
        if "val/acc" in row:
            progress.eval_line(state.step, row)


def fit(
    state: State, logger, progress=None, checkpoint_fn=None, best_fn=None, callbacks=()
) -> dict:
    """Train until total_steps; returns the summary figures (without status). `callbacks`:
    objects with `on_step_start(state)` and/or `on_step_end(state)`, called right before and
    right after every optimizer step (the benchmark's clocks; the tests' kill switch)."""
    loss_fn, bwd_fn, spe = _prepare(state)
    k, log_every = state.tc.accum_steps, state.tc.log_every
    starts = [cb.on_step_start for cb in callbacks if hasattr(cb, "on_step_start")]
    ends = [cb.on_step_end for cb in callbacks if hasattr(cb, "on_step_end")]
    ckpt_step = state.step
    clock = _Clock(state)
    while _running(state):
        it = state.batcher.epoch(state.epoch, start=state.micro_pos)
        while _running(state):
            micro = []
            for _ in range(k):
                b = next(it, None)
                if b is None:
                    break
                micro.append(b)
            if len(micro) < k:  # cannot happen: steps_per_epoch counts whole groups
                state.epoch, state.micro_pos = state.epoch + 1, 0
                break
            log_now = (state.step + 1) % log_every == 0 or state.step + 1 == state.total_steps
            for f in starts:
                f(state)
            train_step(state, micro, loss_fn, bwd_fn, log_now)
            for f in ends:
                f(state)
            state.micro_pos += k
            epoch_done = state.micro_pos // k >= spe
            if epoch_done:
                state.epoch, state.micro_pos = state.epoch + 1, 0
            row = _step_row(state, clock, log_now, best_fn)
            if row:
                _emit(state, row, spe, logger, progress)
            if checkpoint_fn is not None and _checkpoint_due(state, row):
                checkpoint_fn(state)
                ckpt_step = state.step
            if epoch_done:
                break
    clock.pause(state)
    if state.stop_requested and checkpoint_fn is not None and ckpt_step != state.step:
        checkpoint_fn(state)  # the signal came after this step's checkpoint decision
    return summary_figures(state)


def _running(state: State) -> bool:
    return (
        state.step < state.total_steps and not state.stop_requested and state.stopped_early is None
    )


def _checkpoint_due(state: State, row: dict) -> bool:
    every = state.tc.checkpoint_every
    if state.step >= state.total_steps or state.stop_requested or state.stopped_early is not None:
        return True
    if every:
        return state.step % every == 0
    return "val/acc" in row


def summary_figures(state: State) -> dict:
    """summary.json's figures: `best/val/<m>` and `test/<m>` at the best-val checkpoint (chosen
    on `select`), `final/*` at the last evaluation; m: loss, acc (multi-label: f1, f1_macro)."""
    final = next((r for r in reversed(state.rows) if "test/acc" in r), {})
    figs = state.loss.figures
    s = {f"best/val/{m}": state.best.get(f"val/{m}") for m in figs}
    s.update({"best/step": state.best.get("step"), "select": state.loss.select})
    s.update({f"test/{m}": state.best.get(f"test/{m}") for m in (*figs, "loss")})
    s.update({f"final/test/{m}": final.get(f"test/{m}") for m in (*figs, "loss")})
    s.update({f"final/val/{m}": final.get(f"val/{m}") for m in figs})
    s.update(
        {
            "steps": state.step,
            "planned_steps": state.total_steps,
            "stopped_early": state.stopped_early is not None,  # by trainer.patience, at `steps`
            "epochs": state.epoch,
            "steps_per_epoch": state.optimizer_steps_per_epoch,
            "samples_per_sec": (
                state.samples_seen / state.train_seconds if state.train_seconds else None
            ),
            "train_seconds": state.train_seconds,
            "peak_mem_bytes": devmod.peak_mem_bytes(state.plan.device),
        }
    )
    if state.nan_skips:
        s["nan_skips"] = state.nan_skips
    return s


def update_best(state: State, row: dict) -> bool:
    """Track the best value of the selection metric (trainer.select: val/acc, or val/f1 for a
    multi-label loss); the val and test figures at that point are kept (summary's `test/*`)."""
    if not _improves(state, row):
        return False
    state.best = {
        k: v for k, v in row.items() if k.startswith(("val/", "test/")) and "/raw/" not in k
    }
    state.best["step"] = state.step
    return True


# -- seeds and RNG ---------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    # process-wide: set either way, so a job after a deterministic one in the same process (an
    # in-process sweep, a caller running several trainings) gets the mode its config asks for
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        # deterministic mode would also fill every new uninitialized tensor with NaN, a debugging
        # aid for ops that read memory they never wrote: it changes no result of a correct op
        # and costs a fill per allocation (measured in docs/bench.md)
        torch.utils.deterministic.fill_uninitialized_memory = False


def stream_seed(seed: int, offset: int) -> int:
    """The seed of a run's random streams (data order, dropout and every other draw made while
    training) at `trainer.stream_offset`: the run's own seed at offset 0, so nothing changes;
    at offset k another seed derived from (seed, k) by numpy's SeedSequence, which spreads
    neighbouring inputs apart, so (seed 3, offset 1) shares no stream with seed 4."""
    if not offset:
        return seed
    return int(np.random.SeedSequence([seed % (1 << 63), offset]).generate_state(1)[0])


def offset_streams(seed: int, offset: int) -> None:
    """Re-seed the process's generators for training at `offset` (see stream_seed), after the
    model's initialisation and the tricks' setup drew from them: an A/A arm starts from the same
    weights as the baseline and trains along another random path of the same distribution.
    Offset 0 touches nothing (bit-identical to a run without the key)."""
    if offset:
        s = stream_seed(seed, offset)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)


def torch_determinism(restore: dict | None = None) -> dict:
    """torch's process-wide determinism settings, which `seed_everything` changes; with
    `restore` (an earlier return value), set them back. For callers that run several trainings
    or other code in one process (the benchmark, the tests)."""

    now = {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill": det.fill_uninitialized_memory,
    }
    if restore:
        torch.use_deterministic_algorithms(restore["deterministic"], warn_only=restore["warn_only"])
        det.fill_uninitialized_memory = restore["fill"]
    return now


def rng_state() -> dict:
    np_state = np.random.get_state()
    s = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def install_signal_handlers(state: State):
    """SIGTERM / SIGINT: finish the current step, checkpoint, exit as `interrupted`."""

    def handler(signum, frame):
        if state.stop_requested or state._stop_pending:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt

        request_stop(state, signal.Signals(signum).name)

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in old:
        try:
            signal.signal(s, handler)
        except ValueError:  # not the main thread (e.g. joblib worker): leave as is
            pass
    return old


def total_steps(cfg, steps_per_epoch: int) -> int:
    if cfg.max_steps is not None:
        return int(cfg.max_steps)
    return int(cfg.epochs) * (steps_per_epoch // cfg.accum_steps)
