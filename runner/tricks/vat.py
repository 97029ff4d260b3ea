"""Virtual adversarial training: the prediction must not change along its most sensitive direction.

With p = stop_grad f(x) the clean prediction and u ~ N(0, I) shaped like the embedding:

    repeat `iters` times:  u <- ∇_r KL(p ‖ f(x + r)) at r = xi · u/‖u‖
    loss <- loss + weight · KL(p ‖ f(x + eps · u/‖u‖))

The repeated step is one power iteration towards the dominant eigenvector of the KL's Hessian.
The gradient is taken w.r.t. the perturbation r evaluated at xi·u/‖u‖, as in Miyato et al. and the
blog's reference code; differentiating through the normalisation instead would project out the
component along u and stall the iteration. The KL needs no labels: on semi-supervised data
(dataset.labeled_fraction) it sees every row of the batch, labelled or not, while the supervised
loss sees the labelled rows only (the semi-supervised VAT of the paper and of the blog's result).
The divergence is the run's loss's (``state.loss.divergence``, runner.losses): KL(p ‖ q) for
cross-entropy; for a multi-label loss the blog's Σ_i (σ(s_i) − σ(t_i))(s_i − t_i)
("GlobalPointer下的“KL散度”应该是怎样的？", https://kexue.fm/archives/9039), symmetric by
construction. ‖·‖ is over the whole
perturbed tensor (the blog's code) or per sample (Miyato et al.) with norm=sample.

Miyato et al., "Virtual Adversarial Training: A Regularization Method for Supervised and
Semi-Supervised Learning", TPAMI 2018.
Su Jianlin, "泛化性乱弹：从随机噪声、梯度惩罚到虚拟对抗训练", https://kexue.fm/archives/7466 .

Defaults: eps = 1.0, xi = 10, iters = 1, weight = 1, norm = global | sample.

Composition: order 30 (consistency). The extra passes run on ``Out.batch`` (what the inner chain
actually forwarded: R-Drop's doubled batch, the noisy batch) with dropout active. Cost: 1 + iters
extra forwards, iters of them with a backward to the perturbation only.
Logged: ``train/vat_kl`` (the KL at the adversarial perturbation).
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.losses import kl
from runner.tricks import Trick
from runner.tricks.fgm import check_norm, for_direction, l2_normalize


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Mean over samples of KL(softmax(p_logits) ‖ softmax(q_logits))."""
    return kl(p_logits, q_logits).mean()


def divergence(state, p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """The mean over samples of the run's loss's divergence (KL(p ‖ q) for cross-entropy)."""
    return state.loss.divergence(p_logits, q_logits).mean()


def vat_perturbation(
    state,
    batch: dict,
    p_logits: torch.Tensor,
    shape,
    dtype,
    eps: float,
    xi: float,
    iters: int,
    norm: str = "global",
) -> torch.Tensor:
    """The virtual adversarial perturbation eps·u/‖u‖ after `iters` power iterations."""
    u = torch.randn(shape, device=p_logits.device)
    for _ in range(iters):
        r = (xi * l2_normalize(u, norm)).to(dtype).requires_grad_(True)
        d = divergence(state, p_logits, state.forward(batch, delta=r).logits)
        (u,) = torch.autograd.grad(for_direction(state, d), r)
    return (eps * l2_normalize(u, norm)).to(dtype)


class VAT(Trick):
    order = 30
    figures = ("train/vat_kl",)
    noop = {"weight": 0.0}
    noop_exact = False  # weight 0 still draws u (the RNG stream moves) and runs the passes
    # the clean pass, iters passes back to r only, the adversarial pass
    passes = "2+iters (3 at iters=1)"
    stackable = False  # runs using it train solo (runner.stack_run)
    needs_embed_grad = True  # keeps Out.embed: its shape is the perturbation's

    def __init__(
        self,
        eps: float = 1.0,
        xi: float = 10.0,
        iters: int = 1,
        weight: float = 1.0,
        norm: str = "global",
        order: int | None = None,
    ):
        super().__init__(order)
        positive(eps, "reg.vat.eps")
        positive(xi, "reg.vat.xi")
        positive(iters, "reg.vat.iters", integer=True)
        positive(weight, "reg.vat.weight", allow_zero=True)
        check_norm(norm, "reg.vat.norm")
        self.eps, self.xi, self.iters = float(eps), float(xi), int(iters)
        self.weight, self.norm = float(weight), norm

    def loss(self, state, batch, next):
        out = next(batch)
        b = out.batch if out.batch is not None else batch
        p = out.logits.detach()
        r = vat_perturbation(
            state, b, p, out.embed.shape, out.embed.dtype, self.eps, self.xi, self.iters, self.norm
        )
        d = divergence(state, p, state.forward(b, delta=r).logits)
        out.loss = out.loss + self.weight * d
        out.parts["vat_kl"] = d.detach()
        return out
