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
    compile: bool = False  # torch.compile the model (trainer.compile; a warm-up cost)
    pin_memory: bool = False  # host tensors bound for the device: pinned, non-blocking copies
    #: check the loss for NaN after every step (a host read: free on CPU, a sync on CUDA, where
    #: the loss is checked only on log steps). Gradients are checked on log steps, and every
    #: step under on_nan=skip, which must decide before the update.
    finite_check_each_step: bool = True

    @property
    def amp_dtype(self):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)


def plan(device: str = "auto", precision: str = "auto", caps: Caps | None = None,
         compile: bool = False) -> Plan:
    """On CUDA: bf16 autocast where supported (fp16 + GradScaler otherwise), fused optimizer
    kernels, TF32 matmuls, pinned non-blocking host-to-device copies, no per-step host sync.
    On CPU: fp32, fused kernels (torch's fused AdamW runs on CPU too)."""
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
                fused=True, tf32=on_cuda, compile=bool(compile), pin_memory=on_cuda,
                finite_check_each_step=not on_cuda)


def setup_backends(p: Plan) -> None:
    """Process-wide switches the plan asks for: TF32 matmuls and convolutions on CUDA."""
    if p.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """Move a tensor to `device`; a host tensor bound for CUDA is pinned first and copied
    non-blocking, so the copy neither stalls the host nor waits for the queued kernels."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


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
