"""Model-aware defaults: a model config's `train_with` gives the optimizer lr and warm-up it trains
with, for the keys the user did not set; whatever the user sets (command line, own config) wins."""

from __future__ import annotations

import pytest
import torch
import yaml

from runner.config import compose, model_defaults, options
from runner.schedule import linear, warmup_length

from conftest import CONF, cli, train_run


def _train_with(model: str) -> dict:
    return (yaml.safe_load((CONF / "model" / f"{model}.yaml").read_text()) or {}).get(
        "train_with"
    ) or {}


def test_minilm_composes_its_fine_tuning_settings():
    cfg = compose(["model=minilm", "dataset=tweets"])
    assert cfg.optimizer.lr == 5e-5 and cfg.schedule.warmup_steps == 0.06
    assert model_defaults(cfg) == [
        "trainer.epochs=3 from model=minilm's defaults",
        "optimizer.lr=5e-05 from model=minilm's defaults",
        "schedule.warmup_steps=0.06 from model=minilm's defaults",
    ]
    lion = compose(["model=minilm", "optimizer=lion"])
    assert lion.optimizer.lr == _train_with("minilm")["lr"]["lion"]
    # no entry for sgd: its own lr, and the note says so
    sgd = compose(["model=minilm", "optimizer=sgd"])
    assert sgd.optimizer.lr == 0.05
    assert any("has no lr for optimizer=sgd" in n for n in model_defaults(sgd))


def test_models_without_defaults_keep_the_optimizers_own():
    cfg = compose([])
    assert cfg.optimizer.lr == 0.01 and cfg.schedule.warmup_steps == 0
    assert model_defaults(cfg) == []


@pytest.mark.parametrize("model", [m for m in options("model") if _train_with(m)])
@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_an_explicit_lr_is_never_replaced(model, optimizer):
    cfg = compose(
        [
            f"model={model}",
            f"optimizer={optimizer}",
            "optimizer.lr=0.0123",
            "schedule.warmup_steps=7",
            "trainer.epochs=5",
        ]
    )
    assert cfg.optimizer.lr == 0.0123 and cfg.schedule.warmup_steps == 7
    assert cfg.trainer.epochs == 5
    assert model_defaults(cfg) == []


def test_the_users_own_config_wins(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "defaults:\n  - train\n  - override model: minilm\n  - _self_\noptimizer:\n  lr: 0.002\n"
    )
    r = cli(
        ["train", "--config-dir", str(tmp_path), "--config-name", "mine", "--cfg", "job"],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["optimizer"]["lr"] == 0.002  # theirs
    assert cfg["schedule"]["warmup_steps"] == 0.06  # the model's, for the key they left alone


def test_cfg_job_and_config_yaml_show_the_values_and_the_first_line_says_why(tmp_path):
    args = [
        "train",
        "model=transformer",
        "model.width=16",
        "model.depth=1",
        "model.heads=2",
        "dataset=tweets",
        "dataset.train_size=16",
        "dataset.val_size=8",
        "dataset.test_size=8",
        "dataset.max_len=64",
        "trainer.max_steps=2",
        "trainer.progress=false",
        "trainer.batch_size=8",
    ]
    r = cli([*args, "--cfg", "job"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["optimizer"]["lr"] == 1e-3
    r = cli([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]  # (a data note, e.g. truncation, would come before it)
    assert first.startswith("train 2 steps (trainer.max_steps")  # the planned length
    assert "defaults: optimizer.lr=0.001 from model=transformer's defaults" in first
    # bad input stays one error line: the note waits for training to start
    r = cli(
        [
            *args,
            "dataset=csv",
            f"dataset.path={tmp_path / 'missing.csv'}",
            "dataset.text_column=text",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == 1e-3 and saved["schedule"]["warmup_steps"] == 0.1


def test_a_fractional_warmup_is_that_share_of_the_run():
    assert warmup_length(0.06, 100) == 6 and warmup_length(0.06, 10) == 1
    assert warmup_length(0, 100) == 0 and warmup_length(25, 100) == 25
    a, b = linear(200, warmup_steps=0.1), linear(200, warmup_steps=20)
    assert [a(s) for s in range(200)] == [b(s) for s in range(200)]
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule.warmup_steps"):
        warmup_length(1.5, 100)


@pytest.mark.slow
def test_minilm_with_no_lr_learns_on_tweets(tmp_path):
    """The newcomer's run: model=minilm, nothing about the optimizer set; 40 steps of batch 16
    on 320 short tweets beat the majority class on validation."""
    from runner.data.tweets import build

    val = build(tokenizer="bytes", train_size=1, val_size=200, test_size=1).val["y"]
    majority = torch.bincount(val).max().item() / len(val)
    s = train_run(
        [
            "dataset=tweets",
            "model=minilm",
            "dataset.train_size=320",
            "dataset.val_size=200",
            "dataset.test_size=50",
            "dataset.max_len=32",
            "trainer.epochs=2",
            "trainer.batch_size=16",
            "trainer.eval_batch_size=100",
            "trainer.progress=false",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")
    assert s["best/val/acc"] > majority + 0.1, (s["best/val/acc"], majority)


def test_runs_from_before_train_with_still_resume_and_rerun(tmp_path):
    """A run written before models carried `train_with` (same values set by hand) is the same
    config: its sweep job is skipped, its checkpoint resumes; train_with is advice only."""
    import json

    from omegaconf import OmegaConf

    from runner.checkpoint import check_compatible
    from runner.config import to_container
    from runner.main import sweep_job_plan

    cfg = compose(["model=transformer", "dataset=tweets"])
    old = to_container(cfg)
    del old["model"]["train_with"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert sweep_job_plan(cfg, tmp_path) == "skip"
    check_compatible(old, to_container(cfg))
