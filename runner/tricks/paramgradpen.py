"""Parameter gradient penalty: the explicit form of implicit gradient regularisation.

    loss <- loss + gamma/4 · ‖∇_θ loss‖²

Gradient descent with learning rate lr follows, to second order, the flow of
loss + lr/4 · ‖∇_θ loss‖² (Barrett & Dherin); this trick adds the term explicitly with its own
strength gamma, computed with create_graph (a double backward through every parameter).

Barrett & Dherin, "Implicit Gradient Regularization", ICLR 2021.
Su Jianlin, "从动力学角度看优化算法（五）：为什么学习率不宜过小？", https://kexue.fm/archives/7787 ;
"输入梯度惩罚与参数梯度惩罚的一个不等式", https://kexue.fm/archives/8796 .

Defaults: gamma = 0.1 (a visible strength; gamma = lr reproduces the implicit term of SGD).

Composition: order 20, as the input gradient penalty: the gradient of the loss its inner chain
returns. Costs about one extra backward. Not compatible with torch.compile (double backward).
Logged: ``train/paramgradpen_sq`` = ‖∇_θ loss‖².
"""

from __future__ import annotations

import torch

from runner.errors import positive
from runner.tricks.gradpen import GradPenalty, grad_sq


def param_grad_sq(loss: torch.Tensor, params: list) -> torch.Tensor:
    return grad_sq(loss, params)


class ParamGradPen(GradPenalty):
    figures = ("train/paramgradpen_sq",)
    noop = {"gamma": 0.0}
    noop_exact = False
    passes = "~3 (double backward)"
    stackable = True  # per member: its loss, its slices of the stacked weights, its gamma
    stack_keys = ("gamma",)
    key = "paramgradpen_sq"

    def __init__(self, gamma: float = 0.1, order: int | None = None):
        super().__init__(order)
        positive(gamma, "reg.paramgradpen.gamma", allow_zero=True)
        self.gamma = float(gamma)

    @property
    def weight(self) -> float:
        return self.gamma / 4

    def wrt(self, state, out) -> list:
        return state.params
