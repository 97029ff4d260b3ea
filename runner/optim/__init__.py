"""Optimizers torch lacks, each a plain `torch.optim.Optimizer` subclass (so LambdaLR, GradScaler,
checkpoints and the tricks' step hooks work unchanged):

- `lion.Lion`: sign of interpolated momentum (Chen et al. 2023), one state buffer per parameter;
- `tiger.Tiger`: Lion with beta1 = beta2 (Su Jianlin 2023);
- `adafactor.Adafactor`: the blog's Adafactor (kexue.fm/archives/7302), torch's differs;
- `sgdw.SGDW`: torch's SGD with decoupled weight decay (as AdamW), so `weight_decay` means the
  same thing for every optimizer of conf/optimizer/.

Parameter groups (no weight decay on biases and normalisation weights) are built for every
optimizer by `runner.build.param_groups`.
"""

from runner.optim.adafactor import Adafactor
from runner.optim.lion import Lion, lion_update
from runner.optim.sgdw import SGDW
from runner.optim.tiger import Tiger

__all__ = ["Adafactor", "Lion", "SGDW", "Tiger", "lion_update"]
