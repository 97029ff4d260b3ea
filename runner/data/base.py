from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from runner.device import to_device
from runner.errors import check, in_range, positive


@dataclass
class Data:
    train: dict
    val: dict
    test: dict
    info: dict = field(default_factory=dict)  # passed to the model builder where it accepts them
    class_names: list | None = None
    # batch -> batch, applied by the batchers (e.g. runner.data.text.TrimPadding: dynamic padding)
    collate: object = None
    #: where batches are computed on; None: where the splits are (device-resident data). When
    #: the splits stay on the host (streamed), the batchers copy each batch there.
    device: object = None

    def to(self, device, resident: bool = True) -> Data:
        """The splits moved to `device` once (resident), or kept on the host for the batchers
        to copy batch by batch (resident=False: data larger than the device wants)."""
        # to_device: pinned + non-blocking on CUDA
        if resident:
            mv = lambda split: {k: to_device(v, device) for k, v in split.items()}
        else:
            mv = lambda split: {k: v.cpu() for k, v in split.items()}
        return Data(
            mv(self.train),
            mv(self.val),
            mv(self.test),
            dict(self.info),
            self.class_names,
            self.collate,
            None if resident else device,
        )

    def nbytes(self) -> int:
        return sum(
            v.numel() * v.element_size()
            for split in (self.train, self.val, self.test)
            for v in split.values()
        )

    @staticmethod
    def size(split: dict) -> int:
        return len(split["y"])

    def describe(self) -> str:
        return (
            f"train {self.size(self.train)} / val {self.size(self.val)} / "
            f"test {self.size(self.test)}, {self.info.get('num_classes')} classes"
        )


def take(split: dict, idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in split.items()}


def semi_supervised(
    train: dict,
    labeled_fraction=None,
    labeled_size=None,
    seed: int = 0,
    seed_key: str = "dataset.split_seed",
) -> dict:
    """Semi-supervised train split: labels kept on a seeded subset of the rows (`labeled_fraction`
    of them, or `labeled_size` rows), the others marked unlabelled: a bool ``labeled`` tensor
    joins the split and their ``y`` becomes -1 (so no code can read a hidden label by mistake).
    The subset is a permutation seeded by the dataset's split seed (`seed`, named by `seed_key`),
    never by the run seed: every run of a sweep hides the same labels, and labeled_size=100 is
    inside labeled_size=200. Neither set: the split is returned unchanged (no ``labeled`` key)."""
    if labeled_fraction is None and labeled_size is None:
        return train
    check(
        labeled_fraction is None or labeled_size is None,
        "dataset.labeled_fraction",
        "set labeled_fraction or labeled_size, not both",
    )
    n = len(train["y"])
    if labeled_size is not None:
        positive(labeled_size, "dataset.labeled_size", integer=True)
        check(
            labeled_size <= n,
            "dataset.labeled_size",
            f"{labeled_size} is more than the train split's {n} rows",
        )
        k = int(labeled_size)
    else:
        in_range(labeled_fraction, "dataset.labeled_fraction", 0.0, 1.0, lo_open=True)
        k = int(round(n * labeled_fraction))
        check(
            k > 0,
            "dataset.labeled_fraction",
            f"{labeled_fraction} of {n} train rows labels none; raise it",
        )
    # an offset keeps this permutation independent of the split's own (same seed)
    perm = torch.from_numpy(np.random.RandomState(seed + 1000003).permutation(n))
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[perm[:k]] = True
    y = train["y"].clone()
    y[~labeled] = -1
    return {**train, "y": y, "labeled": labeled}
