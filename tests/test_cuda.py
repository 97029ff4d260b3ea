"""The GPU path on a real CUDA device: no faked capabilities (every test here is marked `cuda` and
skipped where torch sees no GPU; `scripts/gpu_check.py` runs them on a lent one with
`pytest -m cuda`). The faked counterparts in test_perf.py / test_engine.py keep testing the same
choices on CPU.
"""

from __future__ import annotations

import pytest
import torch

from runner import device as devmod
from runner import engine
from runner.data.batching import IndexBatcher
from runner.device import Caps, plan

from conftest import FAST, conf_options, read_rows, strip_timing, train_run

pytestmark = pytest.mark.cuda

GPU = ["trainer.device=cuda"]


def test_probed_capabilities_plan_the_fast_path():
    caps = Caps.probe("cuda")
    assert caps.cuda and caps.device_count >= 1 and caps.free_mem > 0
    p = plan("auto", "auto")
    expect = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert (p.device, p.precision, p.scaler) == ("cuda", expect, expect == "fp16")
    assert p.fused and p.tf32 and p.pin_memory and not p.finite_check_each_step


def test_host_tensors_reach_the_gpu_pinned_and_equal():
    t = torch.randn(1000)
    d = devmod.to_device(t, "cuda")
    assert d.device.type == "cuda" and torch.equal(d.cpu(), t)
    split = {"x": torch.randn(50, 3), "y": torch.arange(50)}
    streamed = list(IndexBatcher(split, 10, seed=2, device="cuda").epoch(1))
    resident = list(IndexBatcher({k: v.cuda() for k, v in split.items()}, 10, seed=2).epoch(1))
    assert len(streamed) == len(resident) == 5
    for s, r in zip(streamed, resident):
        assert s["x"].device.type == "cuda"
        assert torch.equal(s["x"], r["x"]) and torch.equal(s["y"], r["y"])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_training_on_the_gpu(tmp_path, model, precision):
    """Each precision trains on the GPU (fp16 through GradScaler) and reports its memory."""
    s = train_run(FAST + GPU + [f"model={model}", f"trainer.precision={precision}"], tmp_path)
    assert s["status"] == "completed", s.get("error")
    assert s["peak_mem_bytes"] > 0 and s["steps"] == 6
    losses = [r["train/loss"] for r in read_rows(tmp_path) if "train/loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_streamed_data_trains_exactly_like_resident_data_on_the_gpu(tmp_path):
    over = FAST + GPU + ["model=cnn1d"]
    a = train_run(over + ["trainer.data_on_device=true"], tmp_path / "resident")
    b = train_run(over + ["trainer.data_on_device=false"], tmp_path / "streamed")
    assert a["status"] == b["status"] == "completed"
    assert strip_timing(read_rows(tmp_path / "resident")) == strip_timing(
        read_rows(tmp_path / "streamed")
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["model=mlp"],
        ["model=cnn1d"],
        ["trainer.precision=fp16"],
        ["trainer.data_on_device=false"],
        ["clip=norm"],
        ["derived=[ema]"],
    ]
    + [[f"reg=[{r}]"] for r in conf_options("reg")],
)
def test_no_device_sync_inside_a_step(monkeypatch, tmp_path, extra):
    """CUDA's sync debug mode raises on any synchronizing call inside the steps that do not log
    (after two warm-up steps, which may initialise lazily): every regularizer, clipping, EMA,
    fp16 with its GradScaler, streamed batches."""
    orig = engine.train_step

    def train_step(state, micro, loss_fn, bwd_fn, log_now):
        torch.cuda.set_sync_debug_mode("error" if not log_now and state.step >= 2 else 0)
        try:
            orig(state, micro, loss_fn, bwd_fn, log_now)
        finally:
            torch.cuda.set_sync_debug_mode(0)

    monkeypatch.setattr(engine, "train_step", train_step)
    s = train_run(
        GPU
        + extra
        + [
            "trainer.max_steps=10",
            "trainer.log_every=5",
            "trainer.eval_every=10",
            "trainer.progress=false",
            "trainer.batch_size=32",
        ],
        tmp_path,
    )
    assert s["status"] == "completed", s.get("error")


def test_nan_stops_at_a_log_step_on_the_gpu(tmp_path):
    s = train_run(FAST + GPU + ["optimizer.lr=1e30"], tmp_path)
    assert s["status"] == "failed"
    assert "non-finite" in s["error"] and "checked on log steps" in s["error"]


def test_minilm_fine_tunes_on_the_gpu(tmp_path):
    s = train_run(
        GPU
        + [
            "model=minilm",
            "dataset=tweets",
            "dataset.train_size=256",
            "dataset.val_size=64",
            "dataset.test_size=64",
            "dataset.padding=bucket",
            "optimizer.lr=5e-5",
            "trainer.max_steps=8",
            "trainer.eval_every=8",
            "trainer.batch_size=32",
            "trainer.progress=false",
            "trainer.keep_checkpoints=none",
            "reg=[fgm]",
        ],
        tmp_path,
    )
    assert s["status"] == "completed", s.get("error")
    assert 0.0 <= s["test/acc"] <= 1.0


def test_compiled_model_trains_on_the_gpu(tmp_path):
    """trainer.compile=true with a real torch.compile (a warm-up of seconds)."""
    s = train_run(FAST + GPU + ["trainer.compile=true"], tmp_path)
    assert s["status"] == "completed", s.get("error")
