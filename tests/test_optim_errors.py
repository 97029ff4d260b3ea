"""Bad optimizer / clip / schedule / derived values give one-line ConfigErrors naming the key,
before anything is written."""

from __future__ import annotations

import pytest

from conftest import cli, conf_options, train_run

CASES = [
    (["optimizer.lr=-0.1"], "optimizer.lr"),
    (["optimizer=lion", "optimizer.lr=0"], "optimizer.lr"),
    (["optimizer=lion", "optimizer.betas=[0.9,1.0]"], "optimizer.betas[1]"),
    (["optimizer=lion", "optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer=adamw", "optimizer.betas=[-0.1,0.999]"], "optimizer.betas[0]"),
    (["optimizer=tiger", "optimizer.beta=1.5"], "optimizer.beta"),
    (["optimizer=sgd", "optimizer.momentum=1.0"], "optimizer.momentum"),
    (["optimizer=lion", "optimizer.weight_decay=-1"], "optimizer.weight_decay"),
    (["optimizer=adafactor", "optimizer.lr=-1"], "optimizer.lr"),
    (["optimizer=lion", "+optimizer.bogus=1"], "optimizer.bogus"),
    (["derived=[lookahead]", "derived.lookahead.k=0"], "derived.lookahead.k"),
    (["derived=[lookahead]", "derived.lookahead.alpha=0"], "derived.lookahead.alpha"),
    (["derived=[lookahead]", "derived.lookahead.alpha=1.5"], "derived.lookahead.alpha"),
    (["derived=[ema]", "derived.ema.decay=1.0"], "derived.ema.decay"),
    (["derived=[ema]", "derived.ema.warmup=3"], "derived.ema.warmup"),
    (
        ["derived=[layer_adapt]", "derived.layer_adapt.max_ratio=-1"],
        "derived.layer_adapt.max_ratio",
    ),
    (["clip=norm", "clip.max_norm=0"], "clip.max_norm"),
    (["clip=adaptive", "clip.max_norm=-1"], "clip.max_norm"),
    (["clip=value", "clip.max_value=-1"], "clip.max_value"),
    (["schedule=piecewise", "schedule.points='x'"], "schedule.points"),
    (["schedule=piecewise", "schedule.unit=epochs"], "schedule.unit"),
    (["schedule=piecewise", "schedule.points='1000:1'"], "schedule.points"),
    (["schedule=linear", "schedule.min_ratio=2"], "schedule.min_ratio"),
]


@pytest.mark.parametrize("overrides,key", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_one_line_error(overrides, key, tmp_path):
    from runner.errors import ConfigError

    run = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train_run([*overrides, "trainer.max_steps=2", "trainer.progress=false"], run)
    msg = str(e.value)
    assert msg.startswith(key) and "\n" not in msg, msg
    assert not run.exists()  # nothing written


def test_cli_bad_beta_exits_with_one_line(tmp_path):
    r = cli(
        ["train", "optimizer=lion", "optimizer.betas=[0.9,1.2]", "trainer.max_steps=2"], tmp_path
    )
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert lines == ["error: optimizer.betas[1]: must be in [0.0, 1.0), got 1.2"], r.stderr


def test_every_derived_option_listed_with_help(tmp_path):
    r = cli(["list", "derived"], tmp_path)
    assert r.returncode == 0, r.stderr
    for option in conf_options("derived"):
        assert option in r.stdout
