"""EMA of weights: evaluate (and keep as best.pt) an exponential moving average of the weights.

    ema_0 = theta_0;   ema_t = d_t * ema_{t-1} + (1 - d_t) * theta_t   after every optimizer step

with d_t = decay, or with `warmup: true` d_t = min(decay, (1 + t) / (10 + t)) (t = updates so far;
the schedule of TensorFlow's ExponentialMovingAverage(num_updates)), so a short run is not
dominated by the initial weights. Polyak & Juditsky, "Acceleration of Stochastic Approximation by
Averaging", SIAM J. Control Optim. 1992; the EMA form used for modern networks e.g. by Tan & Le,
EfficientNet (2019), and timm's ModelEmaV2. Default decay 0.999 (an averaging horizon of about
1000 steps: with fewer steps than that in a run, use warm-up or a smaller decay).

How it plugs in: `setup` copies the model; `on_step_end` updates the copy (order 100: after every
other trick's step-end work, e.g. Lookahead's sync) with torch's
`torch.optim.swa_utils.get_ema_multi_avg_fn` (one foreach lerp over parameters and floating
buffers; integer buffers such as BatchNorm's counter are copied). We do not wrap the copy in
`AveragedModel`: its update reads its device-side counter on the host twice per step (a sync on
CUDA); the math is the same. `eval_model` hands the copy to the engine, so val/test metrics,
`best/val/acc` and best.pt use the EMA weights, and the raw weights' metrics are logged as
`val/raw/*` and `test/raw/*`. The copy and the update counter are this trick's checkpoint state.
"""

from __future__ import annotations

import copy

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from runner.errors import check, in_range
from runner.tricks import Trick


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


class EMA(Trick):
    order = 100
    figures = ("val/raw/loss", "val/raw/acc", "test/raw/loss", "test/raw/acc")
    noop = {"decay": 0.0}
    noop_exact = True
    passes = "1 (+ parameter average)"
    stackable = True  # element-wise over the stacked weights; the copy is a stacked model

    def __init__(self, decay: float = 0.999, warmup: bool = False, order: int | None = None):
        super().__init__(order)
        in_range(decay, "derived.ema.decay", 0.0, 1.0, hi_open=True)
        check(
            isinstance(warmup, bool), "derived.ema.warmup", f"must be true or false, got {warmup!r}"
        )
        self.decay, self.warmup = float(decay), warmup
        self.updates = 0
        self.model: torch.nn.Module | None = None

    def setup(self, state) -> None:
        src = state.raw_model
        self.model = copy.deepcopy(src).eval()
        self.model.requires_grad_(False)
        self._pairs(src)

    def _pairs(self, src) -> None:
        mine = list(self.model.parameters()) + list(self.model.buffers())
        theirs = [t.detach() for t in list(src.parameters()) + list(src.buffers())]
        self._float: dict = {}  # (device, dtype) -> ([ema tensors], [model tensors])
        self._other = []
        for a, b in zip(mine, theirs, strict=True):
            if a.is_floating_point():
                e, c = self._float.setdefault((a.device, a.dtype), ([], []))
                e.append(a)
                c.append(b)
            else:
                self._other.append((a, b))

    @torch.no_grad()
    def on_step_end(self, state) -> None:
        fn = get_ema_multi_avg_fn(ema_decay(self.decay, self.updates, self.warmup))
        for ema, cur in self._float.values():
            fn(ema, cur, None)
        for a, b in self._other:
            a.copy_(b)
        self.updates += 1

    def eval_model(self, state):
        return self.model

    def state_dict(self) -> dict:
        return {"updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["model"])
