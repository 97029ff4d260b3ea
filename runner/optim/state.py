"""How much memory an optimizer keeps: the one count used by the benchmark and the recipes."""

from __future__ import annotations

import torch


def state_bytes(opt) -> int:
    """Bytes of the tensors an optimizer keeps in `state` (each tensor once; 0-d step counters
    not counted), and of the optimizer it wraps when it is a wrapper (`.optimizer`)."""
    seen, total = set(), 0

    def add(v):
        nonlocal total
        if isinstance(v, torch.Tensor) and v.numel() > 1 and id(v) not in seen:
            seen.add(id(v))
            total += v.numel() * v.element_size()
        elif isinstance(v, dict):
            for x in v.values():
                add(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                add(x)

    while opt is not None:
        add(dict(opt.state))
        inner = getattr(opt, "optimizer", None)
        opt = inner if inner is not opt and hasattr(inner, "state") else None
    return total
