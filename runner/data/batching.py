"""Device-resident batching: each epoch is a seeded permutation of the train split, sliced into
batches by tensor indexing. The order of epoch e depends only on (seed, e), so a resumed run can
regenerate it and skip to its position (exact resume)."""

from __future__ import annotations

import torch

from runner.data.base import take


class IndexBatcher:
    """Yields the batches of one epoch. Drops the last incomplete batch (constant batch size
    keeps every step's statistics comparable); `steps_per_epoch` says how many there are."""

    def __init__(self, split: dict, batch_size: int, seed: int, drop_last: bool = True,
                 collate=None):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.n = len(split["y"])
        self.drop_last = drop_last
        self.collate = collate  # e.g. trim padding of text batches
        if self.n < batch_size and drop_last:
            from runner.errors import ConfigError

            raise ConfigError("trainer.batch_size",
                              f"{batch_size} is larger than the train split ({self.n} samples)")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(self.n, generator=g).to(self.split["y"].device)

    def epoch(self, epoch: int, start: int = 0):
        perm = self.order(epoch)
        for i in range(start, self.steps_per_epoch):
            batch = take(self.split, perm[i * self.batch_size:(i + 1) * self.batch_size])
            yield self.collate(batch) if self.collate else batch


def eval_batches(split: dict, batch_size: int, collate=None):
    n = len(split["y"])
    for i in range(0, n, batch_size):
        batch = {k: v[i:i + batch_size] for k, v in split.items()}
        yield collate(batch) if collate else batch
