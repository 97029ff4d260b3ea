from __future__ import annotations

from dataclasses import dataclass, field

import torch


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

    def to(self, device, resident: bool = True) -> "Data":
        """The splits moved to `device` once (resident), or kept on the host for the batchers
        to copy batch by batch (resident=False: data larger than the device wants)."""
        from runner.device import to_device  # pinned + non-blocking on CUDA

        if resident:
            mv = lambda split: {k: to_device(v, device) for k, v in split.items()}
        else:
            mv = lambda split: {k: v.cpu() for k, v in split.items()}
        return Data(mv(self.train), mv(self.val), mv(self.test), dict(self.info), self.class_names,
                    self.collate, None if resident else device)

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for split in (self.train, self.val, self.test)
                   for v in split.values())

    @staticmethod
    def size(split: dict) -> int:
        return len(split["y"])

    def describe(self) -> str:
        return (f"train {self.size(self.train)} / val {self.size(self.val)} / "
                f"test {self.size(self.test)}, {self.info.get('num_classes')} classes")


def take(split: dict, idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in split.items()}
