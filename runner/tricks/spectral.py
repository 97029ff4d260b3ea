"""Spectral norm regularisation: keep every layer's Lipschitz constant small.

    loss <- loss + lam/2 · Σ_W σ_max(W)²

over the weight matrices of every Linear and Conv layer (conv kernels reshaped to
(out_channels, in_channels · kernel)). σ_max is estimated by power iteration with the vectors kept
as trick state: one step per optimizer step (before its first micro-batch),

    v <- Wᵀu / ‖Wᵀu‖,   u <- W v / ‖W v‖,   σ = uᵀ W v

with u, v held constant in the gradient, so ∂σ/∂W = u vᵀ (as in spectral normalisation).
σ(W) bounds the layer's Lipschitz constant; the blog derives the penalty from the Lipschitz
constraint and the generalisation it buys.

Yoshida & Miyato, "Spectral Norm Regularization for Improving the Generalizability of Deep
Learning", 2017; Miyato et al., "Spectral Normalization for GANs", ICLR 2018 (the power iteration).
Su Jianlin, "深度学习中的Lipschitz约束：泛化与生成模型", https://kexue.fm/archives/6051 .

Defaults: lam = 0.01 (``lambda`` is a Python keyword). The vectors start from a fixed seed (the
run's seed; not torch's global generator) and are saved in checkpoints.

Composition: order 50; the penalty is added to each micro-batch loss (so once per step after the
engine's 1/accum_steps scaling). Logged: ``train/spectral_sq`` (Σ σ²) and
``train/spectral_max`` (the largest σ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import positive
from runner.tricks import Trick

LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def weight_matrices(model: nn.Module) -> list:
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, LAYERS) and m.weight is not None and m.weight.requires_grad
    ]


@torch.no_grad()
def power_step(W: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
    """One power-iteration step, in place: v <- Wᵀu/‖·‖, u <- Wv/‖·‖."""
    W = W.detach().float().flatten(1)
    v.copy_(F.normalize(W.t() @ u, dim=0, eps=1e-12))
    u.copy_(F.normalize(W @ v, dim=0, eps=1e-12))


def sigma(W: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """uᵀ W v: differentiable in W, u and v held constant."""
    return u @ (W.float().flatten(1) @ v)


class Spectral(Trick):
    order = 50
    figures = ("train/spectral_sq", "train/spectral_max")
    noop = {"lam": 0.0}
    noop_exact = False
    passes = "1 (+ power iteration)"
    stackable = False  # runs using it train solo (runner.stack_run)

    def __init__(self, lam: float = 0.01, order: int | None = None):
        super().__init__(order)
        positive(lam, "reg.spectral.lam", allow_zero=True)
        self.lam = float(lam)
        self.u: list = []
        self.v: list = []
        self.weights: list = []
        self.last_step = -1  # the optimizer step whose power iteration is done

    def setup(self, state) -> None:
        self.weights = weight_matrices(state.raw_model)
        g = torch.Generator().manual_seed(int(state.seed))
        self.u = [
            F.normalize(torch.randn(W.shape[0], generator=g), dim=0).to(W.device)
            for W in self.weights
        ]
        self.v = [torch.zeros(W[0].numel(), device=W.device) for W in self.weights]

    def loss(self, state, batch, next):
        out = next(batch)
        if not self.weights:
            return out
        if self.last_step != state.step:
            for W, u, v in zip(self.weights, self.u, self.v):
                power_step(W, u, v)
            self.last_step = state.step
        sig = torch.stack([sigma(W, u, v) for W, u, v in zip(self.weights, self.u, self.v)])
        sq = sig.pow(2).sum()
        out.loss = out.loss + self.lam / 2 * sq
        out.parts["spectral_sq"] = sq.detach()
        out.parts["spectral_max"] = sig.detach().max()
        return out

    def state_dict(self) -> dict:
        return {
            "u": [t.cpu() for t in self.u],
            "v": [t.cpu() for t in self.v],
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: dict) -> None:
        dev = [W.device for W in getattr(self, "weights", [])]
        self.u = [t.to(d) for t, d in zip(state["u"], dev)] if dev else list(state["u"])
        self.v = [t.to(d) for t, d in zip(state["v"], dev)] if dev else list(state["v"])
        self.last_step = int(state["last_step"])
