"""Data-parallel training on torch.distributed (DDP), and the glue to SLURM via submitit.

How a run becomes data-parallel
-------------------------------
`torchrun --nproc_per_node N -m runner.main ARGS` (or `tricks train --nproc N ARGS`, which
re-launches through torch.distributed.run) starts N processes with RANK / WORLD_SIZE / LOCAL_RANK
set. A SLURM job started by hydra-submitit-launcher with `tasks_per_node > 1` has only SLURM's
variables; `setup` exports the torch ones from them (submitit's TorchDistributedEnvironment).
Then, in `runner.main.run`:

- the process group starts with NCCL on CUDA (device `cuda:LOCAL_RANK`), gloo on CPU;
- every rank seeds identically (same initial weights, same dropout / ChildTuning draws);
- `trainer.batch_size` is per rank: each optimizer step consumes one global batch of
  batch_size x world_size samples of the same seeded permutation, and rank r takes the r-th slice
  (runner.data.batching.IndexBatcher). Losses are batch means and DDP averages gradients, so a
  DDP step equals a single-process step on the global batch (tested to 1e-5);
- the model is wrapped in DistributedDataParallel (around the compiled module with
  trainer.compile=true: rank 0's evaluation then stays compiled; not exercised by the CPU tests);
  `trainer.accum_steps` micro-batches but the last run under `no_sync` (one all-reduce per
  optimizer step);
- only rank 0 evaluates, logs, writes metrics.jsonl / summary.json / checkpoints; train metrics
  are averaged over ranks at log steps; resume loads last.pt on every rank.

Tricks with several backward passes (FGM, PGD)
----------------------------------------------
DDP all-reduces in every backward whose forward ran with sync on, and it reduces the whole
`.grad` (what earlier backward passes accumulated too), averaging over ranks. After a first synced
backward `.grad` = mean_r(g1) on every rank; the second synced backward reduces
mean_r(g1) + g2_r into mean_r(mean_r(g1) + g2_r) = mean_r(g1) + mean_r(g2): averaging a tensor that
is already identical on every rank leaves it unchanged, so the result is exactly the
single-process sum of both passes' gradients (up to float rounding), at the cost of one extra
all-reduce. Tricks may avoid that cost by running passes whose parameter gradients are not the
last under `state.no_sync()` (forward *and* backward inside: DDP decides at forward time). Rule
for tricks: every forward run with sync on must be followed by one backward through all the
parameters, or by none (torch.autograd.grad w.r.t. inputs only, as VAT does, fires no DDP hook).

Preemption on SLURM
-------------------
submitit sends SIGUSR2 before the time limit or on preemption. `install_preemption_handler`
makes it a stop request like SIGTERM: the engine finishes the step, writes checkpoints/last.pt,
the run ends `interrupted`; then submitit's own handler runs, which re-queues the job with the
same arguments (same run directory), and the requeued job resumes from last.pt by itself
(`auto_resume`). Ranks agree on a stop at the next log step (`agree_stop`), so no rank leaves a
collective the others are still in.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from runner.errors import ConfigError, TrainingFailed


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owned: bool = False  # this run started the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _submitit_env():
    """submitit's JobEnvironment when this process is a submitit task, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        import submitit  # optional extra (submitit)

        return submitit.JobEnvironment()
    except Exception:
        return None


def _export_from_submitit() -> None:
    """A SLURM job with several tasks (hydra-submitit-launcher tasks_per_node > 1) has SLURM's
    variables only: export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from them."""
    if "RANK" in os.environ:
        return
    env = _submitit_env()
    if env is None or env.num_tasks <= 1:
        return
    import submitit  # optional extra (submitit)

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(plan) -> Dist:
    """Start the process group when this process is one of several (torchrun / SLURM tasks).
    Sets `plan.device` to `cuda:LOCAL_RANK` on CUDA. A single process returns Dist() untouched."""
    _export_from_submitit()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()

    local = int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = plan.device.startswith("cuda")
    if on_cuda:
        if plan.device != "cuda":
            raise ConfigError(
                "trainer.device",
                f"{plan.device} under torchrun: each process takes cuda:LOCAL_RANK",
                "auto, cuda, cpu",
            )
        plan.device = f"cuda:{local}"
        torch.cuda.set_device(local)
    backend = "nccl" if on_cuda else "gloo"
    owned = not dist.is_initialized()
    if owned:
        # rank 0 evaluates alone while the others wait in the next all-reduce: allow a long eval
        # (NCCL's default is 10 minutes)
        from datetime import timedelta

        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return Dist(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local,
        backend=backend,
        owned=owned,
    )


def teardown(d: Dist) -> None:
    if d.enabled and d.owned and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist, plan) -> torch.nn.Module:
    """DistributedDataParallel around the module that is called (maybe compiled)."""
    if not d.enabled:
        return model

    ids = [torch.device(plan.device).index] if d.backend == "nccl" else None
    return DDP(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP (evaluation on rank 0 alone must not enter DDP's forward, which may
    broadcast buffers: a collective the other ranks would never join)."""

    return model.module if isinstance(model, DDP) else model


def mean_across(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average a tensor over ranks (SUM then divide: gloo has no AVG)."""
    if world_size <= 1:
        return t

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / world_size


def mean_grads(grads: list, world_size: int) -> list:
    """Average a list of gradient tensors (None kept) over ranks in one all-reduce: e.g. the
    gradient of the global batch from each rank's shard (ChildTuning-D's Fisher)."""
    if world_size <= 1:
        return grads

    present = [g for g in grads if g is not None]
    if not present:
        return grads
    flat = torch.cat([g.reshape(-1).float() for g in present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    out, i = [], 0
    for g in grads:
        if g is None:
            out.append(None)
            continue
        out.append(flat[i : i + g.numel()].view_as(g).to(g.dtype))
        i += g.numel()
    return out


def check_in_sync(state, tol: float = 1e-4) -> None:
    """DDP keeps replicas equal only if every rank applies the same update; a trick with
    rank-local state (a mask from local data, ...) silently breaks that. Compare a per-tensor
    checksum of the parameters across ranks; raise one clear line if they drifted apart."""
    if getattr(state, "world_size", 1) <= 1:
        return

    sums = torch.stack([p.detach().double().sum() for p in state.raw_model.parameters()])
    hi, lo = sums.clone(), -sums
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MAX)
    gap = (hi + lo).abs().max().item()
    if gap > tol * max(1.0, sums.abs().max().item()):
        names = ", ".join(t.name for t in state.tricks) or "none"
        raise TrainingFailed(
            f"parameters differ across the {state.world_size} ranks (checksum "
            f"gap {gap:.3g} at step {state.step}): a trick keeps rank-local "
            f"state; active tricks: {names}"
        )


def agree_stop(state) -> None:
    """Turn a signal seen by any rank into a stop on every rank (a collective: call it at the same
    step on all ranks; the engine does at log steps)."""

    flag = torch.tensor([1.0 if state._stop_pending else 0.0], device=state.plan.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0 and not state.stop_requested:
        state.stop_requested = state._stop_pending or "a signal on another rank"


def broadcast_flag(flag: bool, state) -> bool:
    """Rank 0's `flag` on every rank (a collective: call it at the same step on all ranks). The
    engine's early-stopping decision, which rank 0 makes from its own evaluation."""

    t = torch.tensor([1.0 if flag else 0.0], device=state.plan.device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0)


def broadcast_object(obj, d: Dist):
    """Rank 0's value of `obj` on every rank (e.g. the run directory, whose ${now:} timestamp may
    differ between processes)."""
    if not d.enabled:
        return obj

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sampler(dataset, d: Dist, seed: int, shuffle: bool = True, drop_last: bool = True):
    """For streamed (DataLoader) datasets: a DistributedSampler under DDP (call
    `set_epoch(epoch)` each epoch), else a seeded RandomSampler / SequentialSampler."""

    if d.enabled:
        return DistributedSampler(
            dataset,
            num_replicas=d.world_size,
            rank=d.rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
    if shuffle:
        return RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return SequentialSampler(dataset)


class NullLogger:
    """What ranks other than 0 log to."""

    def start(self, *a, **k):
        pass

    def log(self, row):
        pass

    def finish(self, summary):
        pass


# -- SLURM preemption ------------------------------------------------------------------------

PREEMPT_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
PREEMPT_NAME = PREEMPT_SIGNAL.name if PREEMPT_SIGNAL is not None else None


def install_preemption_handler(state):
    """Under submitit: the preemption / timeout signal (SIGUSR2) stops training like SIGTERM
    (finish the step, write last.pt). Returns submitit's own handler, to be called once the
    checkpoint is written (`requeue`), or None outside submitit."""
    if PREEMPT_SIGNAL is None or _submitit_env() is None:
        return None
    previous = signal.getsignal(PREEMPT_SIGNAL)

    def handler(signum, frame):
        request_stop(state, signal.Signals(signum).name)

    try:
        signal.signal(PREEMPT_SIGNAL, handler)
    except ValueError:  # not the main thread
        return None
    return previous


def request_stop(state, name: str) -> None:
    """Called from a signal handler: a single process stops after this step; under DDP the ranks
    first agree at the next log step (`agree_stop`)."""
    if getattr(state, "world_size", 1) > 1:
        state._stop_pending = name
    else:
        state.stop_requested = name


def restore_preemption_handler(previous) -> None:
    if previous is not None:
        try:
            signal.signal(PREEMPT_SIGNAL, previous)
        except (ValueError, TypeError):
            pass


def requeue(previous) -> None:
    """After last.pt is written: hand the preemption signal to submitit's handler, which (on rank
    0) re-queues this job with the same arguments, hence the same run directory, and exits."""
    restore_preemption_handler(previous)
    if callable(previous):
        previous(PREEMPT_SIGNAL, None)


def auto_resume(run_dir: Path) -> bool:
    """A submitit job re-queued after preemption starts again with its original arguments: resume
    from its own last.pt when one exists and the run did not complete."""
    if _submitit_env() is None:
        return False
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not last.exists():
        return False

    s = Path(run_dir) / "summary.json"
    try:
        return json.loads(s.read_text()).get("status") != "completed" if s.exists() else True
    except (OSError, ValueError):
        return True
