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


TEXT = [
    "dataset=tweets",
    "dataset.padding=bucket",  # length-grouped batches: grouped by the optimizer batch
    "dataset.train_size=400",
    "dataset.val_size=50",
    "dataset.test_size=50",
    "model=transformer",
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "optimizer=adamw",
]


def test_accumulation_equals_a_larger_batch_on_length_bucketed_text(tmp_path):
    """With dataset.padding=bucket the k micro-batches of a step are the rows of the k-times
    larger batch (each micro-batch padded to its own rows), so the parameters match too; grouped
    by the micro-batch, a step gathered k length groups and trained differently (the bug this
    guards: derived_text's accumulation arm). Masked mean pooling makes padding inert."""
    big = train_run([*BASE, *TEXT, "trainer.batch_size=40"], tmp_path / "big")
    acc = train_run(
        [*BASE, *TEXT, "trainer.batch_size=10", "trainer.accum_steps=4"], tmp_path / "acc"
    )
    assert big["status"] == acc["status"] == "completed"
    ma, mb = _last(tmp_path / "big")["model"], _last(tmp_path / "acc")["model"]
    for name in ma:
        torch.testing.assert_close(mb[name], ma[name], rtol=0, atol=2e-5, msg=name)


def test_bucketed_order_groups_by_the_optimizer_batch():
    """Each group of k consecutive micro-batches is one optimizer batch of the un-accumulated
    order (same rows), and without accumulation the order is what it was (group=1)."""
    from runner.data.batching import IndexBatcher, bucketed_order

    class Lengths:
        bucket = True

        def __init__(self, lengths):
            self.lengths = lengths

        def host_lengths(self, split):
            return self.lengths

    n = 400
    lengths = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    split = {"x": torch.arange(n), "y": torch.zeros(n, dtype=torch.long)}
    big = IndexBatcher(split, 40, seed=3, collate=Lengths(lengths)).host_order(2)
    acc = IndexBatcher(split, 10, seed=3, collate=Lengths(lengths), group=4).host_order(2)
    for s in range(n // 40):
        assert set(acc[40 * s : 40 * s + 40].tolist()) == set(big[40 * s : 40 * s + 40].tolist())
    g = torch.Generator().manual_seed(3 * 100003 + 2)
    perm = torch.randperm(n, generator=g)
    assert torch.equal(big, bucketed_order(perm, lengths, 40, g))  # group=1: unchanged
    micro = IndexBatcher(split, 10, seed=3, collate=Lengths(lengths)).host_order(2)
    assert any(  # the old grouping by micro-batch: other rows in a step
        set(micro[40 * s : 40 * s + 40].tolist()) != set(big[40 * s : 40 * s + 40].tolist())
        for s in range(n // 40)
    )


def test_accumulation_is_not_a_no_op(tmp_path):
    """Sanity check of the test above: one micro-batch alone trains differently."""
    for name, bs in (("a", 100), ("b", 25)):
        assert (
            train_run([*BASE, f"trainer.batch_size={bs}"], tmp_path / name)["status"] == "completed"
        )
    ma, mb = _last(tmp_path / "a")["model"], _last(tmp_path / "b")["model"]
    assert max((ma[n] - mb[n]).abs().max().item() for n in ma) > 1e-3
