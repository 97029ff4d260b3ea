"""Peak tensor memory of a block of PyTorch code on any device, CPU included.

The process RSS on CPU is dominated by torch itself and never goes down, so it cannot show what a
training step allocates. PeakTensorMemory is a TorchDispatchMode that sees every tensor an
operator returns (forward, backward, optimizer), tracks each new storage until it is freed, and
keeps the largest total alive: the peak of memory allocated inside the block (tensors that
existed before the block, like parameters, are not counted unless reallocated).

    with PeakTensorMemory() as pk:
        loss = model(x).sum(); loss.backward(); opt.step()
    pk.peak  # bytes
"""

from __future__ import annotations

import weakref

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class PeakTensorMemory(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        ptr, n = st.data_ptr(), st.nbytes()
        if n == 0 or ptr in self.live:
            return
        self.live[ptr] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(st, self._free, ptr)

    def _free(self, ptr: int) -> None:
        self.current -= self.live.pop(ptr, 0)
