"""TensorBoard sink (`logger=tensorboard`): a fully local live dashboard.

Every numeric key of a metrics.jsonl row becomes a scalar at global step `step` (same names:
`train/loss`, `val/acc`, ...). The resolved config is written as text at the start.

HParams (TensorBoard's HPARAMS tab: a table and parallel coordinates of runs): the session
starts with the run, so running jobs of a sweep are listed at once with their live `val/acc`;
it ends with the run's status and the summary figures as `summary/<key>` scalars. Its
hyperparameters are `choices.<group>` (the option of each config group; `choices.reg` the sorted
tricks joined by `+`, e.g. `fgm+rdrop`, or `none`) plus the flattened config (`optimizer.lr`,
`seed`, ...). The protos are written directly (TensorBoard's own `hparams.summary` needs
TensorFlow). View with `tensorboard --logdir multirun/...`. Only rank 0 writes under
multi-process training.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import yaml

from runner.config import LIST_GROUPS, choices_of, flatten
from runner.log import Sink
from runner.log.wandb import _hydra_choices, is_main_process

#: live scalars shown as HParams metrics while a run goes (the last logged value)
LIVE_METRICS = ("val/acc", "val/loss", "train/loss", "test/acc")
#: summary.json figures written as `summary/<key>` scalars at the end
SUMMARY_METRICS = (
    "best/val/acc",
    "test/acc",
    "final/test/acc",
    "steps",
    "wall_seconds",
    "samples_per_sec",
)


def tb_choices(config: dict, hydra_choices: dict | None = None) -> dict:
    """`choices.<group>` for HParams: list groups as their sorted names joined by `+`."""

    out = {}
    for g, v in choices_of(config, hydra_choices).items():
        if g in LIST_GROUPS:
            names = sorted(n for n in str(v).strip("[]").split(",") if n and n != "none")
            v = "+".join(names) or "none"
        out[f"choices.{g}"] = str(v)
    return out


def hparams_of(config: dict, hydra_choices: dict | None = None) -> dict:
    """The session's hyperparameters: choices first, then the flattened config as numbers,
    bools and strings (lists and null as their text)."""

    hp = tb_choices(config, hydra_choices)
    for k, v in flatten(config).items():
        if isinstance(v, (bool, int, float, str)):
            hp[k] = v
        else:
            hp[k] = "null" if v is None else str(v)
    return hp


def _summary(**plugin_data):
    """One hparams-plugin Summary (experiment | session_start_info | session_end_info)."""
    # optional extra (tensorboard)
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    tag = {
        "experiment": metadata.EXPERIMENT_TAG,
        "session_start_info": metadata.SESSION_START_INFO_TAG,
        "session_end_info": metadata.SESSION_END_INFO_TAG,
    }[next(iter(plugin_data))]
    content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **plugin_data)
    md = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=md)])


def session_start(hparams: dict):
    """The experiment (hparam names and types, metric names) and the session's start."""
    # optional extra (tensorboard)
    from tensorboard.plugins.hparams.api_pb2 import (
        DataType,
        Experiment,
        HParamInfo,
        MetricInfo,
        MetricName,
    )
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    ssi, infos = SessionStartInfo(start_time_secs=time.time()), []
    for k, v in hparams.items():
        if isinstance(v, bool):
            ssi.hparams[k].bool_value, kind = v, "DATA_TYPE_BOOL"
        elif isinstance(v, (int, float)):
            ssi.hparams[k].number_value, kind = float(v), "DATA_TYPE_FLOAT64"
        else:
            ssi.hparams[k].string_value, kind = str(v), "DATA_TYPE_STRING"
        infos.append(HParamInfo(name=k, type=DataType.Value(kind)))
    metrics = [
        MetricInfo(name=MetricName(tag=t))
        for t in (*LIVE_METRICS, *(f"summary/{k}" for k in SUMMARY_METRICS))
    ]
    exp = Experiment(hparam_infos=infos, metric_infos=metrics)
    return _summary(experiment=exp), _summary(session_start_info=ssi)


def session_end(status: str):
    from tensorboard.plugins.hparams.api_pb2 import Status  # optional extra (tensorboard)
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

    code = {
        "completed": "STATUS_SUCCESS",
        "failed": "STATUS_FAILURE",
        "interrupted": "STATUS_ABORTED",
    }.get(status, "STATUS_UNKNOWN")
    return _summary(
        session_end_info=SessionEndInfo(status=Status.Value(code), end_time_secs=time.time())
    )


class TensorBoardSink(Sink):
    def __init__(self, dir: str | None = None, flush_secs: int = 10):
        self.dir, self.flush_secs = dir, flush_secs
        self.writer = None
        self.config = {}
        self.step = 0

    def start(self, run_dir, config):
        if not is_main_process():
            return
        from torch.utils.tensorboard import SummaryWriter  # optional extra (tensorboard)

        logdir = Path(self.dir) if self.dir else Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(logdir), flush_secs=int(self.flush_secs))
        self.config = config
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)
        fw = self.writer._get_file_writer()
        for s in session_start(hparams_of(config, _hydra_choices(Path(run_dir)))):
            fw.add_summary(s)
        self.writer.flush()  # a running job shows in the HParams tab now

    def log(self, row):
        if self.writer is None:
            return
        step = self.step = int(row.get("step", 0))
        for k, v in row.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            self.writer.add_scalar(k, v, step)

    def finish(self, summary):
        if self.writer is None:
            return
        w, self.writer = self.writer, None
        try:
            step = int(summary.get("steps") or self.step)
            for k, v in summary.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and math.isfinite(float(v))
                ):
                    w.add_scalar(f"summary/{k}", float(v), step)
            w._get_file_writer().add_summary(session_end(str(summary.get("status"))), step)
        finally:
            w.close()
