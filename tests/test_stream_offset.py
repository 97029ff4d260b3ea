"""trainer.stream_offset: the A/A arm's mechanics. Offset k keeps the initial weights, the split
and the config's every other draw, and moves the data order and dropout to another random
stream of the seed; offset 0 is the run without the key, bit for bit."""

from __future__ import annotations

import signal

import pytest
import torch

from runner.config import compose, validate
from runner.engine import stream_seed
from runner.errors import ConfigError
from runner.main import setup

from conftest import cli, read_rows, strip_timing, train_run

ARGS = [
    "trainer.max_steps=6",
    "trainer.eval_every=3",
    "trainer.log_every=3",
    "trainer.progress=false",
    "model.dropout=0.5",
]


def _setup(offset: int, run_dir):
    job = setup(compose([*ARGS, f"trainer.stream_offset={offset}"]), run_dir)
    job.logger.finish({"status": "interrupted"})  # closes the jsonl sink
    return job.state


def _dropout_out(state):
    """One training-mode forward of a fixed batch: its output depends on the dropout masks
    drawn from the process's generator, which the run's training would draw next."""
    model = state.raw_model.train()
    batch = {k: v[:64] for k, v in state.data.train.items()}
    with torch.no_grad():
        return model(batch)


def test_offset_keeps_the_weights_and_moves_order_and_dropout(tmp_path):
    s0 = _setup(0, tmp_path / "a")
    w0 = {k: v.clone() for k, v in s0.raw_model.state_dict().items()}
    order0, out0 = s0.batcher.host_order(0), _dropout_out(s0)
    s1 = _setup(1, tmp_path / "b")
    w1 = s1.raw_model.state_dict()
    order1, out1 = s1.batcher.host_order(0), _dropout_out(s1)
    s1b = _setup(1, tmp_path / "c")
    order1b, out1b = s1b.batcher.host_order(0), _dropout_out(s1b)
    s2 = _setup(2, tmp_path / "d")

    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert torch.equal(s0.data.train["x"], s1.data.train["x"])  # the same split
    assert not torch.equal(order0, order1)  # another data order
    assert sorted(order1.tolist()) == sorted(order0.tolist())  # of the same rows
    assert not torch.equal(out0, out1)  # other dropout masks
    # a stream is a function of (seed, offset): the same offset repeats itself
    assert torch.equal(order1, order1b) and torch.equal(out1, out1b)
    assert not torch.equal(order1, s2.batcher.host_order(0))


def test_offset_zero_is_the_run_without_the_key_and_offsets_differ(tmp_path):
    train_run(ARGS, tmp_path / "plain")
    train_run([*ARGS, "trainer.stream_offset=0"], tmp_path / "zero")
    train_run([*ARGS, "trainer.stream_offset=1"], tmp_path / "one")
    plain = strip_timing(read_rows(tmp_path / "plain"))
    assert plain == strip_timing(read_rows(tmp_path / "zero"))
    assert plain != strip_timing(read_rows(tmp_path / "one"))
    assert stream_seed(7, 0) == 7
    # neighbouring (seed, offset) pairs share no stream
    seeds = {stream_seed(s, k) for s in range(20) for k in range(1, 4)}
    assert len(seeds) == 60 and not seeds & set(range(20))


def test_a_negative_offset_is_one_line(tmp_path):
    r = cli(
        ["train", *ARGS, "trainer.stream_offset=-1", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "error: trainer.stream_offset: must be >= 0, got -1"
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="trainer.stream_offset: must be an integer"):
        validate(compose([*ARGS, "trainer.stream_offset=0.5"]))


def test_an_offset_run_killed_and_resumed_ends_as_the_uninterrupted_one(tmp_path):
    """The offset streams survive a resume: the checkpoint restores the generators (the offset's
    re-seed comes before it) and the data order of the next epoch comes from the offset's seed
    (13 steps per epoch: the kill at 15 is past the first epoch's end)."""
    args = [
        "trainer.max_steps=18",
        "trainer.batch_size=256",
        "trainer.log_every=3",
        "trainer.checkpoint_every=4",
        "trainer.progress=false",
        "trainer.device=cpu",
        "model.dropout=0.5",
        "trainer.stream_offset=3",
    ]
    train_run(args, tmp_path / "whole")
    d = tmp_path / "killed"
    r = cli(
        ["train", *args, f"hydra.run.dir={d}"],
        cwd=tmp_path,
        env={"TRICKS_TEST_KILL_AT_STEP": "15"},
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    train_run([*args, "resume=true"], d)
    assert strip_timing(read_rows(d)) == strip_timing(read_rows(tmp_path / "whole"))
