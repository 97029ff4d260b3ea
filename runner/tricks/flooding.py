"""Flooding: keep the training loss floating around a level b.

    loss <- |loss - b| + b

Above b this is plain descent; below b the gradient's sign flips and training ascends back to b.
Ishida et al., "Do We Need Zero Training Loss After Achieving Zero Training Error?", ICML 2020.
Su Jianlin, "我们真的需要把训练集的损失降到零吗？" https://kexue.fm/archives/7643 — he shows that
flooding alternates descent and ascent, which on average is gradient descent on loss + (lr/4)·‖g‖²,
i.e. an implicit gradient penalty.

Defaults: b = 0.1. With b = 0 the loss (a cross-entropy, >= 0) is unchanged.

Applied to each (micro-)batch loss; under gradient accumulation the flood is applied per
micro-batch (each micro-batch's mean loss is flooded before the losses are averaged), which is the
only form that needs no extra memory; with accum_steps = k it therefore floods batches k times
smaller than the effective batch. Logged: ``train/flood_active_frac``, the fraction of
micro-batches whose loss was below b (where the sign flipped).

Composition: order 10, the outermost loss trick: it floods the total loss, other tricks' terms
included (R-Drop's KL, the gradient penalties). The adversarial passes of FGM/PGD (backward
hooks) are not flooded, but their direction comes from the flooded loss's gradient.
"""

from __future__ import annotations

from runner.errors import positive
from runner.tricks import Trick


def flood(loss, b: float):
    return (loss - b).abs() + b


class Flooding(Trick):
    order = 10  # outermost: floods the total loss, including other tricks' terms
    figures = ("train/flood_active_frac",)
    noop = {"b": 0.0}
    noop_exact = True
    passes = "1"
    stackable = True
    stack_keys = ("b",)

    def __init__(self, b: float = 0.1, order: int | None = None):
        super().__init__(order)
        positive(b, "reg.flooding.b", allow_zero=True)
        self.b = float(b)

    def loss(self, state, batch, next):
        out = next(batch)
        out.parts["flood_active_frac"] = (out.loss.detach() < self.b).float()
        out.loss = flood(out.loss, self.b)
        return out
