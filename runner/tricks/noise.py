"""Gaussian input noise: train on embedding + sigma · N(0, I).

The noise is drawn per (micro-)batch and attached to the batch as its embedding offset
(``batch["delta"]``, added by ``State.forward``): for continuous data the embedding is the input
itself, for text models the embedding output. To second order in sigma, training with noise
equals training with a gradient penalty on the input (Bishop 1995), the link the blog draws to
adversarial training.

Bishop, "Training with Noise is Equivalent to Tikhonov Regularization", Neural Computation 1995.
Su Jianlin, "泛化性乱弹：从随机噪声、梯度惩罚到虚拟对抗训练", https://kexue.fm/archives/7466 .

Defaults: sigma = 0.1. With sigma = 0 nothing is drawn and nothing changes.

Composition: order 60, innermost loss trick: R-Drop's two copies get independent noise, and
backward tricks (FGM, PGD) perturb around the noisy point (``Out.batch`` carries the noise). The
noise comes from torch's global generator, which checkpoints save.
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick


class Noise(Trick):
    order = 60
    figures = ()
    noop = {"sigma": 0.0}
    noop_exact = True
    passes = "1"
    stackable = True
    stack_keys = ("sigma",)

    def __init__(self, sigma: float = 0.1, order: int | None = None):
        super().__init__(order)
        positive(sigma, "reg.noise.sigma", allow_zero=True)
        self.sigma = float(sigma)

    def loss(self, state, batch, next):
        if not torch.is_tensor(self.sigma) and not self.sigma:  # a tensor: per member (a stack)
            return next(batch)
        with torch.no_grad(), state.autocast():
            ref = state.raw_model.embed(batch)  # for continuous data: the input itself, no compute
        if state.stacked:  # each member's draws from its own generator, its own sigma
            sigma = self.sigma
            if torch.is_tensor(sigma):
                sigma = sigma.view(-1, *([1] * (ref.dim() - 1)))
            noise = sigma * state.member_randn(ref.shape[1:], ref.device)
        else:
            noise = self.sigma * torch.randn(ref.shape, device=ref.device, dtype=torch.float32)
        noise = noise.to(ref.dtype)
        old = batch.get("delta")
        return next({**batch, "delta": noise if old is None else old + noise})
