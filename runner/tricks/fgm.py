"""FGM adversarial training: one adversarial step on the embedding, gradients accumulated.

After the clean backward, with g = ∂loss/∂embedding:

    r = eps · g / ‖g‖        (‖·‖ over the whole perturbed tensor; per-sample with norm=sample)

forward and backward again at embedding + r, so the adversarial gradients add to the clean ones,
then carry on from the clean embedding. The perturbation is passed to the model as an additive
``delta``: the embedding (for mnist1d: the input itself; for text: the embedding output, not the
embedding table) is never modified, so nothing needs restoring.

Miyato, Dai & Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
Classification", ICLR 2017 (FGM on embeddings); Goodfellow et al. 2015 (FGSM).
Su Jianlin, "对抗训练浅谈：意义、方法和思考（附Keras实现）", https://kexue.fm/archives/7234 .

Defaults: eps = 1.0, norm = global (the blog's whole-tensor norm) | sample.

Composition: order 70 (adversarial backward). g is the gradient of the loss the loss chain
returned (R-Drop's KL and flooding included); the adversarial pass runs on ``Out.batch`` (the
doubled batch under R-Drop, the noisy one under input noise) with the plain cross-entropy. Under
gradient accumulation g is scaled by 1/accum_steps (and the fp16 loss scale): the direction is
unaffected. Cost: one extra forward+backward. Logged: ``train/adv_loss``.
"""

from __future__ import annotations

import torch

from runner.errors import check, positive
from runner.tricks import Trick

NORMS = ("global", "sample")


def l2_normalize(g: torch.Tensor, norm: str = "global", tiny: float = 1e-12) -> torch.Tensor:
    """g / ‖g‖ over the whole tensor (global) or over each sample (dim 0)."""
    g = g.float()
    if norm == "global":
        return g / g.norm().clamp_min(tiny)
    n = g.flatten(1).norm(dim=1).clamp_min(tiny)
    return g / n.view(-1, *([1] * (g.dim() - 1)))


def project(r: torch.Tensor, eps: float, norm: str = "global") -> torch.Tensor:
    """Project r onto the L2 ball of radius eps (whole tensor or per sample)."""
    if norm == "global":
        n = r.norm()
        return r * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    n = r.flatten(1).norm(dim=1)
    f = torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return r * f.view(-1, *([1] * (r.dim() - 1)))


def check_norm(norm: str, key: str) -> None:
    check(norm in NORMS, key, f"got {norm!r}", ", ".join(NORMS))


def for_direction(state, loss: torch.Tensor) -> torch.Tensor:
    """The loss to differentiate when only the gradient's direction matters: scaled by the fp16
    GradScaler when there is one, so small gradients do not underflow (no host sync)."""
    return state.scaler.scale(loss) if state.scaler is not None else loss


def embed_grad(out) -> torch.Tensor | None:
    """∂loss/∂embedding after the clean backward (None if the loss does not reach it)."""
    return None if out.embed is None else out.embed.grad


class FGM(Trick):
    order = 70
    figures = ("train/adv_loss",)
    noop = None
    noop_exact = None
    passes = "2"
    needs_embed_grad = True

    def __init__(self, eps: float = 1.0, norm: str = "global", order: int | None = None):
        super().__init__(order)
        positive(eps, "reg.fgm.eps")
        check_norm(norm, "reg.fgm.norm")
        self.eps, self.norm = float(eps), norm

    def backward(self, state, out, batch, next) -> None:
        next(out, batch)
        g = embed_grad(out)
        if g is None:
            return
        r = (self.eps * l2_normalize(g, self.norm)).to(out.embed.dtype)
        adv = state.forward(out.batch if out.batch is not None else batch, delta=r)
        state.backward(adv.loss)
        state.log_scalar("adv_loss", adv.loss)
