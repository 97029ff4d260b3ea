"""Gradient accumulation through the real engine: k micro-batches of size b give the same
parameters as one batch of size k*b (no dropout, fp32). The engine's batcher slices one seeded
permutation per epoch, so the k micro-batches hold exactly the samples of the big batch."""

from __future__ import annotations

import pytest
import torch

from conftest import read_rows, train_run

BASE = [
    "trainer.precision=fp32",
    "trainer.device=cpu",
    "trainer.max_steps=5",
    "trainer.eval_every=5",
    "trainer.log_every=1",
    "trainer.progress=false",
    "model.dropout=0.0",
]


def _last(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("optimizer,clip", [("sgd", "none"), ("adamw", "none"), ("sgd", "norm")])
def test_accumulation_equals_a_k_times_larger_batch(optimizer, clip, tmp_path):
    """With clip=norm the threshold (0.3, below the gradient norm) applies to the accumulated
    gradient, so clipping too gives the big batch's parameters."""
    k, b = 4, 25
    opt = [f"optimizer={optimizer}", f"clip={clip}"]
    if clip == "norm":
        opt.append("clip.max_norm=0.3")
    big = train_run(
        [*BASE, *opt, f"trainer.batch_size={k * b}", "trainer.accum_steps=1"], tmp_path / "big"
    )
    acc = train_run(
        [*BASE, *opt, f"trainer.batch_size={b}", f"trainer.accum_steps={k}"], tmp_path / "acc"
    )
    assert big["status"] == acc["status"] == "completed"
    assert big["steps"] == acc["steps"] == 5
    ma, mb = _last(tmp_path / "big")["model"], _last(tmp_path / "acc")["model"]
    for name in ma:
        torch.testing.assert_close(mb[name], ma[name], rtol=0, atol=1e-6, msg=name)
    ra, rb = read_rows(tmp_path / "big"), read_rows(tmp_path / "acc")
    for x, y in zip(ra, rb):  # the logged loss is the big batch's loss; so is grad_norm
        assert x["step"] == y["step"]
        assert y["train/loss"] == pytest.approx(x["train/loss"], abs=1e-6)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], abs=1e-6)
    assert rb[-1]["val/loss"] == pytest.approx(ra[-1]["val/loss"], abs=1e-6)
    if clip == "norm":  # the clip really acted
        f = [r["train/clip_factor"] for r in rb if "train/clip_factor" in r]
        assert f and all(x < 1 for x in f)


def test_accumulation_is_not_a_no_op(tmp_path):
    """Sanity check of the test above: one micro-batch alone trains differently."""
    for name, bs in (("a", 100), ("b", 25)):
        assert (
            train_run([*BASE, f"trainer.batch_size={bs}"], tmp_path / name)["status"] == "completed"
        )
    ma, mb = _last(tmp_path / "a")["model"], _last(tmp_path / "b")["model"]
    assert max((ma[n] - mb[n]).abs().max().item() for n in ma) > 1e-3
