"""Device, precision, fused-kernel and compile selection. Pure functions of the config and the
capability checks, so the CUDA paths are unit-tested on CPU by faking `Caps`."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch

from runner.errors import ConfigError


@dataclass
class Caps:
    """What the machine can do; `Caps.probe()` asks torch, tests construct it by hand."""

    cuda: bool
    bf16: bool = False
    device_count: int = 0
    free_mem: int | None = None  # free bytes on the training device (CUDA), None: unknown

    @staticmethod
    def probe(device: str | None = None) -> Caps:
        cuda = torch.cuda.is_available()
        free = None
        if cuda and device is not None and str(device).startswith("cuda"):
            free = int(torch.cuda.mem_get_info(torch.device(device))[0])
        return Caps(
            cuda=cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            device_count=torch.cuda.device_count() if cuda else 0,
            free_mem=free,
        )


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


def plan(
    device: str = "auto", precision: str = "auto", caps: Caps | None = None, compile: bool = False
) -> Plan:
    """On CUDA: bf16 autocast where supported (fp16 + GradScaler otherwise), fused optimizer
    kernels, TF32 matmuls, pinned non-blocking host-to-device copies, no per-step host sync.
    On CPU: fp32, fused kernels (torch's fused AdamW runs on CPU too)."""
    caps = caps or Caps.probe()
    if device == "auto":
        device = "cuda" if caps.cuda else "cpu"
    if device.startswith("cuda") and not caps.cuda:
        raise ConfigError(
            "trainer.device", f"{device} requested but CUDA is not available", "auto, cpu"
        )
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        precision = ("bf16" if caps.bf16 else "fp16") if on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ConfigError("trainer.precision", "fp16 needs CUDA", "fp32, bf16 on CPU")
    return Plan(
        device=device,
        precision=precision,
        scaler=precision == "fp16",
        fused=True,
        tf32=on_cuda,
        compile=bool(compile),
        pin_memory=on_cuda,
        finite_check_each_step=not on_cuda,
    )


#: with trainer.data_on_device=auto, data stays on the host when it would take more than this
#: share of the device's free memory (the rest is for the model, optimizer and activations)
RESIDENT_SHARE = 0.25


def data_on_device(setting, p: Plan, nbytes: int, caps: Caps | None = None) -> bool:
    """Keep the data splits on the training device (batches are then slices: no copies), or on
    the host (pinned) with every batch gathered there and copied non-blocking (streamed)?
    `setting`: true | false | auto (on the device when it takes at most RESIDENT_SHARE of its
    free memory; always on CPU, where the host is the device)."""
    setting = str(setting).lower()
    if setting in ("true", "false"):
        return setting == "true"
    if not p.device.startswith("cuda"):
        return True
    caps = caps or Caps.probe(p.device)
    return caps.free_mem is None or nbytes <= RESIDENT_SHARE * caps.free_mem


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
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


def autocast(p: Plan):
    if p.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=p.device.split(":")[0], dtype=p.amp_dtype)


def peak_mem_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    import resource  # Unix only: imported where it is used, so the module loads everywhere

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
