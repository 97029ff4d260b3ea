"""Device-resident batching: each epoch is a seeded permutation of the train split, sliced into
batches by tensor indexing. The order of epoch e depends only on (seed, e), so a resumed run can
regenerate it and skip to its position (exact resume).

Under DDP (`world_size` > 1) `batch_size` is per process: step i takes the i-th global batch of
batch_size x world_size samples of the same permutation on every rank, and rank r its r-th slice,
so the ranks together see exactly the batches a single process with the global batch size sees.

Text data with `dataset.padding=bucket` gets length-grouped batches (`bucketed_order`): still
every row once per epoch, still a function of (seed, epoch) only. Under gradient accumulation
(`group` = trainer.accum_steps micro-batches per optimizer step) the rows are grouped by the
optimizer batch, so k accumulated micro-batches hold exactly the rows of one k-times-larger batch,
as they do without bucketing (grouped by the micro-batch instead, an optimizer step would gather
k length groups where the larger batch has one: another sampling, not the same update).

Streamed data (`device` given: the splits stay on the host because they would take too much of
the GPU; trainer.data_on_device): each batch is gathered and trimmed on the host, pinned and
copied to `device` non-blocking (runner.device.to_device). The same rows in the same order as
device-resident batching."""

from __future__ import annotations

import numpy as np
import torch

from runner.data.base import take
from runner.device import to_device
from runner.errors import ConfigError


class IndexBatcher:
    """Yields the batches of one epoch. Drops the last incomplete batch (constant batch size
    keeps every step's statistics comparable); `steps_per_epoch` says how many there are."""

    def __init__(
        self,
        split: dict,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        collate=None,
        rank: int = 0,
        world_size: int = 1,
        device=None,
        group: int = 1,
    ):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.device = device  # streamed: copy each batch there (the split stays on the host)
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.group = max(1, int(group))  # micro-batches per optimizer step (accumulation)
        self.n = len(split["y"])
        self.drop_last = drop_last
        self.collate = collate  # e.g. trim padding of text batches
        # A collate may keep per-row facts on the host (TrimPadding: each row's length), read
        # from the device once here, so that no batch needs a device read (a sync on CUDA):
        # collate.host_view(split) -> f(batch, host_rows)
        view = getattr(collate, "host_view", None)
        self._host_collate = view(split) if view is not None else None
        self._lengths = collate.host_lengths(split) if getattr(collate, "bucket", False) else None
        if self.n < self.global_batch and drop_last:
            what = (
                f"{batch_size}"
                if world_size == 1
                else f"{batch_size} x {world_size} processes = {self.global_batch}"
            )
            raise ConfigError(
                "trainer.batch_size", f"{what} is larger than the train split ({self.n} samples)"
            )

    @property
    def steps_per_epoch(self) -> int:
        g = self.global_batch
        return self.n // g if self.drop_last else -(-self.n // g)

    def host_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        if self._lengths is None:
            return perm
        return bucketed_order(perm, self._lengths, self.global_batch * self.group, g)

    def order(self, epoch: int) -> torch.Tensor:
        # to_device: pinned + non-blocking on CUDA, no stall per epoch
        return to_device(self.host_order(epoch), self.split["y"].device)

    def epoch(self, epoch: int, start: int = 0):
        if self.device is not None:
            yield from self._streamed(epoch, start)
            return
        host = self.host_order(epoch)
        perm = to_device(host, self.split["y"].device)
        rows = host.numpy() if self._host_collate is not None else None
        # one gather per epoch, then every batch is a contiguous slice (a view): no per-step
        # indexing kernel, the same rows in the same order
        shuffled = take(self.split, perm[: min(self.n, self.steps_per_epoch * self.global_batch)])
        for i in range(start, self.steps_per_epoch):
            lo = i * self.global_batch + self.rank * self.batch_size  # this rank's slice
            batch = {k: v[lo : lo + self.batch_size] for k, v in shuffled.items()}
            if self._host_collate is not None:
                yield self._host_collate(batch, rows[lo : lo + self.batch_size])
            else:
                yield self.collate(batch) if self.collate else batch

    def _streamed(self, epoch: int, start: int):
        host = self.host_order(epoch)
        for i in range(start, self.steps_per_epoch):
            lo = i * self.global_batch + self.rank * self.batch_size
            idx = host[lo : lo + self.batch_size]
            batch = {k: v.index_select(0, idx) for k, v in self.split.items()}
            if self._host_collate is not None:
                batch = self._host_collate(batch, idx.numpy())
            elif self.collate:
                batch = self.collate(batch)
            yield {k: to_device(v, self.device) for k, v in batch.items()}


#: a bucket holds this many batches; rows are sorted by length inside a bucket only, so batches
#: stay random mixtures of the epoch's rows (fairseq / HF `group_by_length` use the same idea)
BUCKET_BATCHES = 50


def bucketed_order(perm: torch.Tensor, lengths, batch: int, g: torch.Generator) -> torch.Tensor:
    """Length-grouped epoch order from the random permutation `perm`: the rows that make full
    batches are cut into buckets of BUCKET_BATCHES batches, each bucket sorted by length (stable)
    and cut into batches, and the batch order is shuffled with `g`. Rows left out of full batches
    (the incomplete last batch) stay at the end, as in the plain order. A permutation of all
    rows."""
    full = len(perm) // batch * batch
    head = perm[:full]
    lens = torch.as_tensor(lengths)[head]
    size = batch * BUCKET_BATCHES
    sorted_parts = []
    for lo in range(0, full, size):
        idx = torch.argsort(lens[lo : lo + size], stable=True)
        sorted_parts.append(head[lo : lo + size][idx])
    batches = torch.cat(sorted_parts).view(-1, batch) if full else head.view(0, batch)
    batches = batches[torch.randperm(len(batches), generator=g)]
    return torch.cat([batches.reshape(-1), perm[full:]])


def eval_batches(split: dict, batch_size: int, collate=None, device=None):
    """The batches of a whole split for evaluation. With a padding-trimming collate the rows go
    in length order (one device read of the lengths per split), so each batch pads to about its
    own rows' length; a metric summed over every row is the same in any order. `device`: the
    split is streamed from the host, each batch copied there (see IndexBatcher)."""
    n = len(split["y"])
    lengths = getattr(collate, "host_lengths", None)
    if lengths is not None and n > batch_size:
        order = torch.as_tensor(np.argsort(lengths(split), kind="stable"))
        split = take(split, order.to(split["y"].device))
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in split.items()}
        batch = collate(batch) if collate else batch
        if device is not None:
            batch = {k: to_device(v, device) for k, v in batch.items()}
        yield batch
