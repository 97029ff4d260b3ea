"""Engine behaviour: batching, accumulation bookkeeping, device planning (CUDA faked on CPU)."""

from __future__ import annotations

import pytest
import torch

from runner.data.batching import IndexBatcher
from runner.device import Caps, plan
from runner.errors import ConfigError


def test_batcher_yields_every_sample_once_per_epoch():
    split = {"x": torch.arange(103).float()[:, None], "y": torch.arange(103)}
    b = IndexBatcher(split, batch_size=10, seed=0)
    assert b.steps_per_epoch == 10
    seen = torch.cat([bt["y"] for bt in b.epoch(0)])
    assert len(seen) == 100 and len(set(seen.tolist())) == 100
    assert not torch.equal(b.order(0), b.order(1))  # reshuffled each epoch
    assert torch.equal(b.order(3), IndexBatcher(split, 10, seed=0).order(3))  # reproducible
    rest = torch.cat([bt["y"] for bt in b.epoch(0, start=4)])
    assert torch.equal(rest, seen[40:])  # resuming mid-epoch continues the same order


def test_plan_cpu():
    p = plan("auto", "auto", Caps(cuda=False))
    assert (p.device, p.precision, p.scaler, p.tf32) == ("cpu", "fp32", False, False)


def test_plan_cuda_bf16_and_fp16_fallback():
    p = plan("auto", "auto", Caps(cuda=True, bf16=True, device_count=1))
    assert (p.device, p.precision, p.scaler, p.fused, p.tf32) == ("cuda", "bf16", False, True, True)
    p = plan("auto", "auto", Caps(cuda=True, bf16=False, device_count=1))
    assert (p.precision, p.scaler) == ("fp16", True)
    p = plan("cuda", "fp32", Caps(cuda=True, bf16=True))
    assert p.precision == "fp32" and not p.scaler


def test_plan_rejects_impossible():
    with pytest.raises(ConfigError, match="trainer.device"):
        plan("cuda", "auto", Caps(cuda=False))
    with pytest.raises(ConfigError, match="trainer.precision"):
        plan("cpu", "fp16", Caps(cuda=False))


def test_param_groups_skip_bias_and_norm():
    from runner.build import param_groups

    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    g = param_groups(m, 0.1, decay_bias_and_norm=False)
    assert [len(x["params"]) for x in g] == [1, 3]
    assert g[0]["weight_decay"] == 0.1 and g[1]["weight_decay"] == 0.0
    assert len(param_groups(m, 0.1, decay_bias_and_norm=True)) == 1


def test_fit_calls_callbacks_around_every_step_and_changes_nothing(tmp_path):
    """engine.fit's callbacks (how the tests' kill switch and the benchmark's clock plug in):
    on_step_start before step k sees state.step == k, on_step_end after it k + 1, once per
    optimizer step also with accumulation; a run with callbacks logs the same rows."""
    from runner.config import compose
    from runner.main import run

    from conftest import FAST, read_rows, strip_timing, train_run

    class Record:
        def __init__(self):
            self.calls = []

        def on_step_start(self, state):
            self.calls.append(("start", state.step))

        def on_step_end(self, state):
            self.calls.append(("end", state.step))

    class EndOnly:  # either hook may be absent
        def __init__(self):
            self.steps = []

        def on_step_end(self, state):
            self.steps.append(state.step)

    over = [*FAST, "trainer.accum_steps=2"]
    rec, end = Record(), EndOnly()
    s = run(compose(over), tmp_path / "cb", callbacks=[rec, end])
    assert s["status"] == "completed" and s["steps"] == 6
    assert rec.calls == [c for k in range(6) for c in (("start", k), ("end", k + 1))]
    assert end.steps == [1, 2, 3, 4, 5, 6]
    assert train_run(over, tmp_path / "plain")["status"] == "completed"
    assert strip_timing(read_rows(tmp_path / "cb")) == strip_timing(read_rows(tmp_path / "plain"))


def test_summary_records_optimizer_steps_per_epoch(tmp_path):
    """summary.json's `steps_per_epoch` (what the study's equal-compute baselines convert epochs
    with) counts optimizer steps: micro-batches per epoch over accum_steps. 1,000 rows: 800 in
    the train split, 100 of them val, so 700 rows, batch 32: 21 micro-batches, 10 steps of 2."""
    from conftest import train_run

    s = train_run(
        [
            "dataset.num_samples=1000",
            "dataset.val_size=100",
            "trainer.max_steps=null",
            "trainer.epochs=2",
            "trainer.batch_size=32",
            "trainer.accum_steps=2",
            "trainer.progress=false",
            "model.hidden=16",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed"
    assert s["steps_per_epoch"] == 10 and s["steps"] == 2 * 10 and s["epochs"] == 2


def test_eval_test_best_reads_the_test_split_only_where_it_counts(tmp_path):
    """trainer.eval_test=best: the same training (train and val rows equal, test/* in the
    summary equal) with the test split evaluated only at steps where val/acc improves and at
    the last step; a bad value is one error line naming the allowed ones."""
    from runner.config import compose, validate

    from conftest import read_rows, strip_timing, train_run

    base = [
        "dataset.num_samples=1500",
        "model.hidden=16",
        "model.dropout=0.2",  # dropout draws from the RNG: an evaluation that did would show
        "optimizer.lr=0.05",  # large enough for val/acc to dip now and then
        "trainer.max_steps=60",
        "trainer.eval_every=3",
        "trainer.batch_size=32",
        "trainer.progress=false",
    ]
    runs = {m: tmp_path / m for m in ("every", "best")}
    s = {m: train_run([*base, f"trainer.eval_test={m}"], d) for m, d in runs.items()}
    rows = {m: strip_timing(read_rows(d)) for m, d in runs.items()}
    drop_test = lambda rs: [{k: v for k, v in r.items() if not k.startswith("test/")} for r in rs]
    assert drop_test(rows["every"]) == drop_test(rows["best"])
    for k in ("best/val/acc", "best/step", "test/acc", "test/loss", "final/test/acc"):
        assert s["every"][k] == s["best"][k], k
    evals = [r for r in rows["best"] if "val/acc" in r]
    best, want = -1.0, []
    for r in evals:
        if r["val/acc"] > best or r["step"] == 60:
            want.append(r["step"])
        best = max(best, r["val/acc"])
    got = [r["step"] for r in evals if "test/acc" in r]
    assert got == want and len(got) < len(evals)  # some evaluations skipped the test split
    assert all("test/acc" in r for r in rows["every"] if "val/acc" in r)
    with pytest.raises(Exception, match=r"trainer\.eval_test.*every, best"):
        validate(compose([*base, "trainer.eval_test=sometimes"]))
