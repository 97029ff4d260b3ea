"""Input gradient penalty: penalise the loss's sensitivity to the embedding.

    loss <- loss + eps/2 · ‖∂loss/∂embedding‖²

computed with create_graph so the penalty itself is trained (a double backward). ‖·‖² sums over
the whole embedding tensor of the (micro-)batch; the loss is the batch mean. The blog derives it
from adversarial training: to first order, a perturbation along the gradient adds a multiple of
‖∂loss/∂embedding‖² to the loss, so penalising that norm directly trains for the same robustness
without the extra forward pass.

Drucker & LeCun, "Improving Generalization Performance Using Double Backpropagation", 1992;
Ross & Doshi-Velez, AAAI 2018.
Su Jianlin, "对抗训练浅谈：意义、方法和思考（附Keras实现）", https://kexue.fm/archives/7234
(the gradient-penalty section); "输入梯度惩罚与参数梯度惩罚的一个不等式",
https://kexue.fm/archives/8796 .

Defaults: eps = 1.0.

Composition: order 20, outside the consistency tricks (R-Drop, VAT) and label smoothing, inside
flooding: it penalises the gradient of the loss its inner chain returns, w.r.t. that chain's
clean embedding (the extra passes of VAT use their own embedding copies). Not compatible with
torch.compile (double backward). Logged: ``train/gradpen_sq`` = ‖∂loss/∂embedding‖².
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks import Trick


def grad_sq(loss: torch.Tensor, inputs: list) -> torch.Tensor:
    """‖∂loss/∂inputs‖², summed over the tensors, differentiable (create_graph). A stacked run's
    [K] loss and [K, ...] inputs: each member's, [K] (the gradient of Σₖ Lₖ w.r.t. member k's
    slice is its own)."""
    if loss.dim() == 0:
        grads = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)
        return sum(g.float().pow(2).sum() for g in grads if g is not None)
    grads = torch.autograd.grad(loss.sum(), inputs, create_graph=True, allow_unused=True)
    return sum(g.float().pow(2).flatten(1).sum(1) for g in grads if g is not None)


def input_grad_sq(loss: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    return grad_sq(loss, [embed])


class GradPenalty(Trick):
    """loss <- loss + weight · ‖∂loss/∂wrt‖², logged as train/<key>: the shared body of the input
    and the parameter gradient penalties (subclasses name `wrt`, `weight` and `key`)."""

    order = 20
    needs_double_backward = True
    key = ""

    def wrt(self, state, out) -> list:
        raise NotImplementedError

    @property
    def weight(self) -> float:
        raise NotImplementedError

    def loss(self, state, batch, next):
        out = next(batch)
        sq = grad_sq(out.loss, self.wrt(state, out))
        out.loss = out.loss + self.weight * sq
        out.parts[self.key] = sq.detach()
        return out


class GradPen(GradPenalty):
    figures = ("train/gradpen_sq",)
    noop = {"eps": 0.0}
    noop_exact = False
    passes = "~3 (double backward)"
    stackable = True  # per member: its loss, its embedding slice, its eps
    stack_keys = ("eps",)
    needs_embed_grad = True
    key = "gradpen_sq"

    def __init__(self, eps: float = 1.0, order: int | None = None):
        super().__init__(order)
        positive(eps, "reg.gradpen.eps", allow_zero=True)
        self.eps = float(eps)

    @property
    def weight(self) -> float:
        return self.eps / 2

    def wrt(self, state, out) -> list:
        return [out.embed]
