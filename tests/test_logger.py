"""Logger sinks: every conf/logger option trains and keeps the local files intact; W&B offline runs
hold the same history as metrics.jsonl (read back from the .wandb file); `auto` never waits for an
unreachable service; a failing sink never stops training; only rank 0 logs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST, ROOT, cli, conf_options, read_rows, train_run


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of the run's offline .wandb file, via `wandb leet inspect --json`."""
    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(files[0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def history(records) -> list[dict]:
    return [
        {k: v for k, v in r["history"]["item"].items() if not k.startswith("_")}
        for r in records
        if r["type"] == "history"
    ]


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("option", conf_options("logger"))
def test_every_logger_config_trains_and_keeps_local_files(option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    s = train_run([*FAST, f"logger={option}"], tmp_path / "run")
    assert s["status"] == "completed"
    rows = read_rows(tmp_path / "run")
    assert [r["step"] for r in rows if "val/acc" in r] == [3, 6]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_wandb_offline_history_has_the_keys_of_metrics_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    summary = train_run([*FAST, "logger=wandb", "optimizer=sgd", "logger.tags=[mine]"], run)
    rows = read_rows(run)
    recs = wandb_records(run)
    hist = history(recs)
    assert [sorted(h) for h in hist] == [sorted(r) for r in rows]
    for h, r in zip(hist, rows):
        assert all(close(h[k], r[k]) for k in r), (h, r)
    info = next(r["run"] for r in recs if r["type"] == "run")
    config = info["config"]["update"]
    # the full resolved config, flattened; the group options; tags
    from runner.config import flatten

    resolved = flatten(yaml.safe_load((run / "config.yaml").read_text()))
    assert {k: config.get(k, "<missing>") for k in resolved} == resolved
    assert config["trainer.batch_size"] == 32
    assert config["choices.optimizer"] == "sgd" and config["seed"] == 0
    assert info["tags"] == ["mlp", "sgd", "cosine", "mnist1d", "ce", "mine"]
    assert info["job_type"] == "train" and info["project"] == "tricks"
    # curves against `step`
    metrics = [r["metric"] for r in recs if r["type"] == "metric"]
    assert {"glob_name": "*", "step_metric": "step"}.items() <= {
        k: v for m in metrics if m.get("glob_name") == "*" for k, v in m.items()
    }.items()
    # the summary figures at the end
    final = {}
    for r in recs:
        if r["type"] == "summary":
            final.update(r["summary"].get("update", {}))
    assert final["status"] == "completed"
    assert final["test/acc"] == pytest.approx(summary["test/acc"])
    assert final["best/val/acc"] == pytest.approx(summary["best/val/acc"])
    assert (run / "wandb-run-id").read_text().strip() == info["run_id"]


def test_wandb_auto_without_login_goes_offline_with_a_sync_hint(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / ".netrc"), PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "train",
            *FAST,
            "logger=wandb",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(l for l in r.stderr.splitlines() if l.startswith("wandb: offline"))
    assert "not logged in" in line and "wandb sync " in line
    offline_dir = line.split("wandb sync ")[1].strip("` ")
    assert Path(offline_dir).is_dir() and list(Path(offline_dir).glob("run-*.wandb"))
    assert len(history(wandb_records(tmp_path / "run"))) == len(read_rows(tmp_path / "run"))


def test_wandb_auto_with_a_key_but_no_service_is_offline(monkeypatch):
    from runner.log import wandb as wb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    mode, why = wb.resolve_mode("auto", probe_timeout=2.0)
    assert mode == "offline" and "did not answer" in why
    assert wb.resolve_mode("online") == ("online", None)  # explicit modes are kept
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wb.resolve_mode("auto") == ("disabled", None)


def test_wandb_online_init_failure_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    """auto -> online chosen, but init fails (bad key, timeout): the run goes offline, not down."""
    import wandb

    from runner.log import wandb as wb

    monkeypatch.setattr(wb, "resolve_mode", lambda mode, t=3.0: ("online", None))
    real_init = wandb.init

    def init(*a, **k):
        if k.get("mode") == "online":
            raise wandb.errors.CommError("timed out after 20 s")
        return real_init(*a, **k)

    monkeypatch.setattr(wandb, "init", init)
    s = train_run([*FAST, "logger=wandb"], tmp_path / "run")
    assert s["status"] == "completed"
    err = capsys.readouterr().err
    assert "wandb: offline (online init failed (CommError: timed out after 20 s))" in err
    assert len(history(wandb_records(tmp_path / "run"))) == len(read_rows(tmp_path / "run"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref") / "run"
    return train_run(FAST, d), d


@pytest.mark.parametrize("method", ["start", "log", "finish"])
def test_a_failing_wandb_sink_does_not_stop_training(
    method, tmp_path, monkeypatch, capsys, reference_run
):
    from runner.log.wandb import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    ref, ref_dir = reference_run
    calls = []

    def boom(self, *a):
        calls.append(method)
        raise RuntimeError("W&B went away")

    monkeypatch.setattr(WandbSink, method, boom)
    s = train_run([*FAST, "logger=wandb"], tmp_path / "run")
    assert s["status"] == "completed" and s["test/acc"] == ref["test/acc"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "samples_per_sec"} for r in rows]
    assert strip(read_rows(tmp_path / "run")) == strip(read_rows(ref_dir))
    err = capsys.readouterr().err
    assert err.count("warning: logger WandbSink failed") == 1 and "W&B went away" in err
    assert calls == [method]  # switched off after the first failure


def test_only_rank_0_logs(tmp_path, monkeypatch):
    from runner.log.tensorboard import TensorBoardSink
    from runner.log.wandb import WandbSink, is_main_process

    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    for sink in (WandbSink(mode="offline"), TensorBoardSink()):
        sink.start(tmp_path, {"seed": 0})
        sink.log({"step": 1, "train/loss": 1.0})
        sink.finish({"status": "completed"})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


@pytest.mark.parametrize(
    "key,value,msg",
    [
        (
            "mode",
            "sometimes",
            "logger.mode: got 'sometimes' (allowed: auto, online, offline, disabled)",
        ),
        ("init_timeout", "0", "logger.init_timeout: must be > 0, got 0"),
        ("colour", "red", "logger.colour: unknown key (allowed: project, entity, group"),
    ],
)
def test_wandb_bad_keys_are_one_line_config_errors(key, value, msg, tmp_path):
    from runner.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        train_run(
            [
                *FAST,
                "logger=wandb",
                f"+logger.{key}={value}" if key == "colour" else f"logger.{key}={value}",
            ],
            tmp_path / "run",
        )
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no training happened


def test_tensorboard_scalars_match_metrics_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train_run([*FAST, "logger=tensorboard"], run)
    rows = read_rows(run)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expect = {k for r in rows for k in r if k != "step"}
    assert expect <= tags
    for key in ("train/loss", "val/acc", "lr"):
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        want = [(r["step"], r[key]) for r in rows if key in r]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(
            math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-7) for (_, g), (_, w) in zip(got, want)
        )


@pytest.mark.slow
def test_wandb_multirun_jobs_are_runs_of_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli(
        [
            "train",
            "-m",
            "seed=0,1",
            *FAST,
            "logger=wandb",
            "logger.mode=offline",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    infos = [
        next(x["run"] for x in wandb_records(sweep / str(i)) if x["type"] == "run")
        for i in range(2)
    ]
    assert infos[0]["run_group"] == infos[1]["run_group"] == "-".join(sweep.parts[1:])
    assert infos[0]["run_id"] != infos[1]["run_id"]
    assert "seed=0" in infos[0]["display_name"] and "seed=1" in infos[1]["display_name"]


def test_wandb_failing_mid_run_closes_its_run_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    n = {"calls": 0}
    real_log = wandb.sdk.wandb_run.Run.log

    def flaky(self, data, *a, **k):
        n["calls"] += 1
        if n["calls"] == 2:
            raise ConnectionError("connection reset")
        return real_log(self, data, *a, **k)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", flaky)
    s = train_run([*FAST, "logger=wandb"], tmp_path / "run")
    assert s["status"] == "completed"
    rows = read_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 3, 4, 6]  # every row kept locally
    assert "connection reset" in capsys.readouterr().err
    recs = wandb_records(tmp_path / "run")
    assert len(history(recs)) == 1  # W&B got the row before the failure, then was closed
    assert [r["exit"].get("exit_code") for r in recs if r["type"] == "exit"] == [1]


def test_wandb_resume_continues_the_same_run(tmp_path, monkeypatch):
    from runner.log.wandb import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    ids = []
    for resume in (False, True):
        sink = WandbSink(mode="offline")
        sink.start(tmp_path, {"seed": 0, "resume": resume})
        ids.append(sink.run.id)
        sink.log({"step": 1 + 10 * resume, "train/loss": 1.0})
        sink.finish({"status": "completed"})
    assert ids[0] == ids[1] == (tmp_path / "wandb-run-id").read_text().strip()
    sink = WandbSink(mode="offline")  # a fresh run in the same dir is a new W&B run
    sink.start(tmp_path, {"seed": 0, "resume": False})
    assert sink.run.id != ids[0]
    sink.finish({"status": "completed"})


def test_wandb_online_init_that_gets_no_answer_goes_offline(tmp_path, monkeypatch, capsys):
    """A real online init against a server that never answers: after init_timeout, offline."""
    from runner.log import wandb as wb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(wb, "reachable", lambda url=None, timeout=3.0: True)  # probe says yes
    sink = wb.WandbSink(mode="auto", init_timeout=2)
    sink.start(tmp_path, {"seed": 0, "resume": False})
    sink.log({"step": 1, "train/loss": 1.0})
    sink.finish({"status": "completed"})
    err = capsys.readouterr().err
    assert "wandb: offline (online init failed" in err and "wandb sync" in err
    assert history(wandb_records(tmp_path)) == [{"step": 1, "train/loss": 1.0}]


def _hparams_records(logdir):
    """The hparams plugin's records in an event dir, as TensorBoard's own reader sees them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    out = {}
    for _tag, content in acc.PluginTagToContent(metadata.PLUGIN_NAME).items():
        d = HParamsPluginData()
        d.ParseFromString(content)
        out[d.WhichOneof("data")] = d
    return out, acc


def test_tensorboard_hparams_start_with_the_run_and_end_with_its_summary(tmp_path):
    from tensorboard.plugins.hparams.api_pb2 import Status

    from runner.config import compose, to_container
    from runner.log.tensorboard import TensorBoardSink

    config = to_container(compose(["reg=[rdrop,fgm]", "optimizer=lion", "seed=3"]))
    sink = TensorBoardSink(flush_secs=1)
    sink.start(tmp_path, config)
    sink.log({"step": 5, "train/loss": 1.5, "val/acc": 0.25})
    sink.writer.flush()
    running, _ = _hparams_records(tmp_path / "tensorboard")  # a job still training
    assert set(running) == {"experiment", "session_start_info"}
    hp = running["session_start_info"].session_start_info.hparams
    assert hp["choices.reg"].string_value == "fgm+rdrop"
    assert hp["choices.optimizer"].string_value == "lion"
    assert hp["choices.model"].string_value == "mlp"
    assert hp["seed"].number_value == 3 and hp["optimizer.lr"].number_value == 0.001
    names = {i.name for i in running["experiment"].experiment.hparam_infos}
    assert {"choices.reg", "choices.derived", "choices.schedule", "seed"} <= names
    metrics = {m.name.tag for m in running["experiment"].experiment.metric_infos}
    assert {"val/acc", "summary/test/acc", "summary/best/val/acc"} <= metrics

    sink.finish({"status": "completed", "test/acc": 0.5, "best/val/acc": 0.75, "steps": 5})
    done, acc = _hparams_records(tmp_path / "tensorboard")
    assert done["session_end_info"].session_end_info.status == Status.Value("STATUS_SUCCESS")
    assert [(e.step, e.value) for e in acc.Scalars("summary/test/acc")] == [(5, 0.5)]
    assert acc.Scalars("val/acc")[-1].value == 0.25


def test_tensorboard_hparams_of_a_real_run(tmp_path):
    run = tmp_path / "run"
    s = train_run([*FAST, "logger=tensorboard", "reg=[flooding]"], run)
    rec, acc = _hparams_records(run / "tensorboard")
    assert set(rec) == {"experiment", "session_start_info", "session_end_info"}
    hp = rec["session_start_info"].session_start_info.hparams
    assert hp["choices.reg"].string_value == "flooding"
    assert hp["choices.derived"].string_value == "none"
    assert math.isclose(acc.Scalars("summary/test/acc")[-1].value, s["test/acc"], rel_tol=1e-6)


def test_wandb_tags_name_every_group_option():
    from runner.config import choices_of, compose, to_container
    from runner.log.wandb import tags_of

    config = to_container(
        compose(
            ["reg=[rdrop,fgm]", "derived=[ema]", "clip=norm", "schedule=linear", "optimizer=lion"]
        )
    )
    assert tags_of(choices_of(config), config, ["mine"]) == [
        "mlp",
        "lion",
        "rdrop",
        "fgm",
        "ema",
        "norm",
        "linear",
        "mnist1d",
        "ce",
        "mine",
    ]
    # the loss group (another branch adds conf/loss/): tagged from Hydra's choices when present
    assert tags_of({**choices_of(config), "loss": "bce"}, config)[-1] == "bce"
