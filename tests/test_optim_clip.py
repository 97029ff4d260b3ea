"""Clipping forms (conf/clip/) against direct computations; a huge threshold equals no clipping;
every optimizer x every clipping form trains a few steps on mnist1d."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import CONF, conf_options, read_rows, train_run

FP32 = ["trainer.precision=fp32", "trainer.device=cpu"]
FEW = [
    "trainer.max_steps=4",
    "trainer.eval_every=4",
    "trainer.log_every=2",
    "trainer.progress=false",
    "trainer.batch_size=32",
]


def _state(model):
    from runner import device as devmod
    from runner.engine import State

    return State(
        cfg=None,
        plan=devmod.plan("cpu", "fp32"),
        model=model,
        raw_model=model,
        optimizer=None,
        scheduler=None,
        tricks=[],
        data=None,
        batcher=None,
        total_steps=1,
    )


def _model_with_grads(scale: float):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    g = torch.Generator().manual_seed(1)
    for p in m.parameters():
        p.grad = torch.randn(p.shape, generator=g) * scale
    return m


def _direct(form: str, grads: list, thr: float):
    g = [t.double() for t in grads]
    norm = math.sqrt(sum((t**2).sum().item() for t in g))
    if form == "norm":  # g * min(1, gamma / ||g||)
        f = min(1.0, thr / norm)
        return [t * f for t in g], f
    if form == "adaptive":  # g * gamma / (||g|| + gamma)
        f = thr / (norm + thr)
        return [t * f for t in g], f
    if form == "value":
        out = [t.clamp(-thr, thr) for t in g]
        return out, math.sqrt(sum((t**2).sum().item() for t in out)) / norm
    raise AssertionError(form)


TRICKS = {
    "norm": ("NormClip", "max_norm"),
    "value": ("ValueClip", "max_value"),
    "adaptive": ("AdaptiveClip", "max_norm"),
}


def _threshold_key(option: str) -> str:
    cfg = yaml.safe_load((CONF / "clip" / f"{option}.yaml").read_text()) or {}
    return next(k for k in ("max_norm", "max_value") if k in cfg)


CLIP_FORMS = [o for o in conf_options("clip") if o != "none"]


def test_every_clip_config_is_tested_here():
    assert set(CLIP_FORMS) == set(TRICKS)


@pytest.mark.parametrize("form", sorted(TRICKS))
@pytest.mark.parametrize("scale,thr", [(5.0, 1.0), (0.01, 1.0), (3.0, 0.2)])
def test_clip_equals_direct_computation(form, scale, thr):
    import runner.tricks.clip as clip

    cls, key = TRICKS[form]
    model = _model_with_grads(scale)
    st = _state(model)
    expect, factor = _direct(form, [p.grad.clone() for p in model.parameters()], thr)
    norm_before = st.grad_norm().item()
    getattr(clip, cls)(**{key: thr}).on_grads(st)
    for p, e in zip(model.parameters(), expect):
        torch.testing.assert_close(p.grad.double(), e, rtol=1e-5, atol=1e-7)
    logged = st._acc["train/clip_factor"]
    assert logged[1] == 1 and logged[0].item() == pytest.approx(factor, rel=1e-5)
    assert st.grad_norm().item() == norm_before  # the cached pre-clip norm the engine logs


def test_norm_and_adaptive_differ_as_the_blog_says():
    """Below the threshold norm clipping leaves g alone; the adaptive form always shrinks it."""
    import runner.tricks.clip as clip

    for cls, shrinks in (("NormClip", False), ("AdaptiveClip", True)):
        model = _model_with_grads(0.01)
        before = [p.grad.clone() for p in model.parameters()]
        getattr(clip, cls)(max_norm=1.0).on_grads(_state(model))
        changed = any(not torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))
        assert changed == shrinks


def _final_model(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("option", CLIP_FORMS)
def test_huge_threshold_equals_no_clipping(option, tmp_path):
    key = _threshold_key(option)
    base = [*FEW, *FP32, "optimizer=sgd"]
    a = train_run([*base, "clip=none"], tmp_path / "none")
    b = train_run([*base, f"clip={option}", f"clip.{key}=1e12"], tmp_path / option)
    assert a["status"] == b["status"] == "completed"
    ma, mb = _final_model(tmp_path / "none"), _final_model(tmp_path / option)
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
    rows = read_rows(tmp_path / option)
    assert all(r["train/clip_factor"] == 1.0 for r in rows if "train/clip_factor" in r)
    assert any("train/clip_factor" in r and "grad_norm" in r for r in rows)


@pytest.mark.parametrize("clip", conf_options("clip"))
@pytest.mark.parametrize("optimizer", conf_options("optimizer"))
def test_every_optimizer_with_every_clip_trains(optimizer, clip, tmp_path):
    run = tmp_path / "run"
    s = train_run([*FEW, f"optimizer={optimizer}", f"clip={clip}"], run)
    assert s["status"] == "completed", s.get("error")
    rows = read_rows(run)
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    assert s["steps"] == 4
    opt_state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer"]
    assert opt_state["state"], "the optimizer never stepped"  # its state exists after a step
    if clip != "none":
        f = [r["train/clip_factor"] for r in rows if "train/clip_factor" in r]
        assert f and all(0 < x <= 1 for x in f)
