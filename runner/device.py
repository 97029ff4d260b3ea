"""Device, precision, fused-kernel and compile selection. Pure functions of the config and the
capability checks, so the CUDA paths are unit-tested on CPU by faking `Caps`."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Caps:
    """What the machine can do; `Caps.probe()` asks torch, tests construct it by hand."""

    cuda: bool
    bf16: bool = False
    device_count: int = 0

    @staticmethod
    def probe() -> "Caps":
        cuda = torch.cuda.is_available()
        return Caps(cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
                    device_count=torch.cuda.device_count() if cuda else 0)


@dataclass
class Plan:
    device: str
    precision: str  # fp32 | bf16 | fp16
    scaler: bool  # GradScaler: fp16 only
    fused: bool  # fused optimizer kernels
    tf32: bool

    @property
    def amp_dtype(self):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)


def plan(device: str = "auto", precision: str = "auto", caps: Caps | None = None) -> Plan:
    from runner.errors import ConfigError

    caps = caps or Caps.probe()
    if device == "auto":
        device = "cuda" if caps.cuda else "cpu"
    if device.startswith("cuda") and not caps.cuda:
        raise ConfigError("trainer.device", f"{device} requested but CUDA is not available",
                          "auto, cpu")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        precision = ("bf16" if caps.bf16 else "fp16") if on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ConfigError("trainer.precision", "fp16 needs CUDA", "fp32, bf16 on CPU")
    return Plan(device=device, precision=precision, scaler=precision == "fp16",
                fused=True, tf32=on_cuda)


def autocast(p: Plan):
    import contextlib

    if p.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=p.device.split(":")[0], dtype=p.amp_dtype)


def peak_mem_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
