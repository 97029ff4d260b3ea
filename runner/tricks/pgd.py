"""PGD adversarial training: K projected gradient-ascent steps on the embedding.

Starting from the clean gradient g_0 = ∂loss/∂embedding and r_0 = 0, for t = 1..K:

    r_t = Proj_{‖r‖ ≤ eps}( r_{t-1} + alpha · g_{t-1} / ‖g_{t-1}‖ ),
    g_t = ∂ CE(embedding + r_t)/∂ r_t            (t < K: gradient w.r.t. r only)

and at t = K the adversarial loss CE(embedding + r_K) is backpropagated into the parameters, so
only the last step's gradients accumulate onto the clean ones (the intermediate steps touch no
parameter gradient, so nothing needs backing up). The embedding itself is never modified: each
step passes r as an additive ``delta``.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
Su Jianlin, "对抗训练浅谈：意义、方法和思考（附Keras实现）", https://kexue.fm/archives/7234 .

Defaults: K = 3, alpha = 0.3, eps = 1.0, norm = global | sample (as FGM).

Composition: order 70, as FGM (see runner.tricks.fgm). Cost: K extra forward+backward passes.
Logged: ``train/adv_loss`` (the last step's loss).
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick
from runner.tricks.fgm import check_norm, embed_grad, for_direction, l2_normalize, project


class PGD(Trick):
    order = 70
    figures = ("train/adv_loss",)
    noop = None
    noop_exact = None
    passes = "K+1"
    needs_embed_grad = True

    def __init__(self, eps: float = 1.0, alpha: float = 0.3, K: int = 3, norm: str = "global",
                 order: int | None = None):
        super().__init__(order)
        positive(eps, "reg.pgd.eps")
        positive(alpha, "reg.pgd.alpha")
        positive(K, "reg.pgd.K", integer=True)
        check_norm(norm, "reg.pgd.norm")
        self.eps, self.alpha, self.K, self.norm = float(eps), float(alpha), int(K), norm

    def backward(self, state, out, batch, next) -> None:
        next(out, batch)
        g = embed_grad(out)
        if g is None:
            return
        b = out.batch if out.batch is not None else batch
        r = torch.zeros_like(g, dtype=torch.float32)
        for t in range(self.K):
            r = project(r + self.alpha * l2_normalize(g, self.norm), self.eps, self.norm)
            if t < self.K - 1:
                d = r.detach().to(out.embed.dtype).requires_grad_(True)
                (g,) = torch.autograd.grad(for_direction(state, state.forward(b, delta=d).loss), d)
            else:
                adv = state.forward(b, delta=r.to(out.embed.dtype))
                state.backward(adv.loss)
                state.log_scalar("adv_loss", adv.loss)
