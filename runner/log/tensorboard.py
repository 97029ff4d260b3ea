"""TensorBoard sink (`logger=tensorboard`): a fully local live dashboard.

Every numeric key of a metrics.jsonl row becomes a scalar at global step `step` (same names:
`train/loss`, `val/acc`, ...). The resolved config is written as text at the start, and the
summary figures plus the flattened config as hparams at the end (TensorBoard's HParams tab
compares runs side by side). View with `tensorboard --logdir runs/` (or `multirun/`).
Only rank 0 writes under multi-process training.
"""

from __future__ import annotations

import math
from pathlib import Path

from runner.log import Sink
from runner.log.wandb import is_main_process


class TensorBoardSink(Sink):
    def __init__(self, dir: str | None = None, flush_secs: int = 10):
        self.dir, self.flush_secs = dir, flush_secs
        self.writer = None
        self.config = {}

    def start(self, run_dir, config):
        if not is_main_process():
            return
        from torch.utils.tensorboard import SummaryWriter
        import yaml

        logdir = Path(self.dir) if self.dir else Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=int(self.flush_secs))
        self.config = config
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log(self, row):
        if self.writer is None:
            return
        step = int(row.get("step", 0))
        for k, v in row.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            self.writer.add_scalar(k, v, step)

    def finish(self, summary):
        if self.writer is None:
            return
        from runner.config import flatten

        w, self.writer = self.writer, None
        try:
            hparams = {}
            for k, v in flatten(self.config).items():
                if isinstance(v, (bool, int, float, str)):
                    hparams[k] = v
                elif v is None:
                    hparams[k] = "null"
                else:
                    hparams[k] = str(v)
            metrics = {f"summary/{k}": float(v) for k, v in summary.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(float(v))}
            w.add_hparams(hparams, metrics, run_name=".")
        finally:
            w.close()
