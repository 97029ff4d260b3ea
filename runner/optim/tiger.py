"""Tiger: a Tight-fisted optimizer. Lion with beta1 = beta2 = beta, so the update is the sign of the
updated momentum itself:

    m <- beta * m + (1 - beta) * g
    theta <- theta - lr * (sign(m) + wd * theta)

Su Jianlin, "Tiger：一个“抠”到极致的优化器", https://kexue.fm/archives/9512 (reference code:
github.com/bojone/tiger); Lion: Chen et al., "Symbolic Discovery of Optimization Algorithms",
NeurIPS 2023, https://arxiv.org/abs/2302.06675. Because only the momentum builds the update, the
momentum itself performs gradient accumulation
("隐藏在动量中的梯度累积：少更新几步，效果反而更好？", https://kexue.fm/archives/8634): Tiger
needs no extra buffer for it.

Default beta 0.965 (the post's choice for NLP, from Lion's (0.95, 0.98); 0.945 for CV from
(0.9, 0.99)). Learning rate and weight decay: as Lion's (kexue.fm/archives/9473: lr >= 10x below
AdamW's, weight decay scaled up by as much). The post's extras, where they live here:
- parameter-scale learning rates (lr · RMS(θ) per tensor, LAMB-like): `derived=[layer_adapt]`,
  whose trust ratio on a sign update is exactly RMS(θ) (lr is then relative; the reference code's
  is 1.76e-3). The reference code also halves the lr of biases and normalisation weights and
  uses each embedding row's RMS: not reproduced (the optimizer sees tensors, not layers);
- gradient accumulation inside the momentum: `trainer.accum_steps` (the engine sums the
  micro-batches' gradients; Tiger needs no buffer of its own either way);
- the NaN guard (skip the momentum update and shrink θ when a gradient is NaN):
  `trainer.on_nan=skip` skips the whole step instead (no shrinking).
"""

from __future__ import annotations

from runner.errors import in_range
from runner.optim.lion import Lion


class Tiger(Lion):
    def __init__(
        self,
        params,
        lr: float = 1e-4,
        beta: float = 0.965,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ):
        in_range(beta, "optimizer.beta", 0.0, 1.0, hi_open=True)
        super().__init__(
            params,
            lr=lr,
            betas=(beta, beta),
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )
