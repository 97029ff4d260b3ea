"""Adafactor (runner.optim.adafactor, what conf/optimizer/adafactor.yaml uses) against a direct
computation of the blog's formula (kexue.fm/archives/7302), written here in the paper's
row-sum / column-sum form: factored second moments, update clipping, relative step,
beta2_t = 1 - t^-0.8; and where torch.optim.Adafactor differs."""

from __future__ import annotations

import math

import pytest
import torch

from runner.optim.adafactor import Adafactor


def blog_adafactor(theta, grads, lr=1e-2, c=0.8, eps1=1e-30, eps2=1e-3, d=1.0, factor=True):
    """The post's algorithm, step by step, in float64 (no in-place state)."""
    theta = theta.double().clone()
    R = C = V = None
    for t, g in enumerate(grads, start=1):
        g = g.double()
        b2 = 1 - t ** (-c)
        g2 = g**2 + eps1
        if factor:  # R: row sums, C: column sums, V = R C / (1ᵀ R)
            R = (1 - b2) * g2.sum(1) + (b2 * R if R is not None else 0)
            C = (1 - b2) * g2.sum(0) + (b2 * C if C is not None else 0)
            v = torch.outer(R, C) / R.sum()
        else:
            V = (1 - b2) * g2 + (b2 * V if V is not None else 0)
            v = V
        u = g / v.sqrt()
        rms_u = u.pow(2).mean().sqrt().item()
        u = u / max(1.0, rms_u / d)
        rho = min(lr, 1 / math.sqrt(t))
        alpha = max(eps2, theta.pow(2).mean().sqrt().item()) * rho
        theta = theta - alpha * u
    return theta


def _grads(shape, n, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(*shape, generator=g) for _ in range(n)]


@pytest.mark.parametrize(
    "shape,factor",
    [((130, 140), True), ((20, 30), False), ((50,), False)],
    ids=["factored", "small-matrix", "vector"],
)
def test_equals_the_blogs_formula(shape, factor):
    torch.manual_seed(1)
    theta0 = torch.randn(*shape) * 0.05
    grads = _grads(shape, 12)
    p = torch.nn.Parameter(theta0.clone())
    opt = Adafactor([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    want = blog_adafactor(theta0, grads, factor=factor)
    torch.testing.assert_close(p.detach().double(), want, rtol=1e-5, atol=1e-7)
    st = opt.state[p]
    assert ("v_row" in st) == factor and st["step"] == 12
    if factor:  # sublinear memory: one number per row and per column
        assert st["v_row"].numel() + st["v_col"].numel() == sum(shape)


def test_update_clipping_and_relative_step_are_active():
    """At t = 1, beta2_1 = 0, so v = g² + eps1 and u = sign(g) (RMS 1, a huge gradient is no
    bigger step): theta moves by max(eps2, RMS(theta)) · min(lr, 1/sqrt(1)) in RMS."""
    p = torch.nn.Parameter(torch.zeros(10, 10))
    opt = Adafactor([p], lr=0.5)
    p.grad = torch.randn(10, 10) * 1e3
    opt.step()
    # theta = 0: the scale is eps2; rho_1 = min(0.5, 1) = 0.5; clipped update RMS 1
    assert p.detach().pow(2).mean().sqrt().item() == pytest.approx(1e-3 * 0.5, rel=1e-5)


def test_momentum_and_weight_decay_options():
    torch.manual_seed(2)
    theta0 = torch.randn(8, 4)
    grads = _grads((8, 4), 3, seed=3)
    p = torch.nn.Parameter(theta0.clone())
    opt = Adafactor([p], beta1=0.9, weight_decay=0.1)
    th, m, V = theta0.double().clone(), torch.zeros(8, 4, dtype=torch.float64), None
    for t, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        g = g.double()
        b2 = 1 - t**-0.8
        V = (1 - b2) * (g**2 + 1e-30) + (b2 * V if V is not None else 0)
        u = g / V.sqrt()
        u = u / max(1.0, u.pow(2).mean().sqrt().item())
        m = 0.9 * m + 0.1 * u
        alpha = max(1e-3, th.pow(2).mean().sqrt().item()) * min(1e-2, t**-0.5)
        th = th * (1 - 1e-2 * 0.1) - alpha * m
    torch.testing.assert_close(p.detach().double(), th, rtol=1e-5, atol=1e-7)


def test_torch_adafactor_differs_from_the_blog_on_small_gradients():
    """torch's eps1 (float32 eps) floors sqrt(v) instead of being added to g²: with gradients
    below ~1e-7 its update differs from the post's (which is why the config uses ours)."""
    theta0 = torch.full((6,), 0.5)
    grads = [torch.full((6,), 1e-9) * (1 + torch.arange(6.0))]
    want = blog_adafactor(theta0, grads, factor=False)
    p = torch.nn.Parameter(theta0.clone())
    opt = torch.optim.Adafactor([p], lr=1e-2)
    p.grad = grads[0].clone()
    opt.step()
    assert not torch.allclose(p.detach().double(), want, rtol=1e-3)
    ours = torch.nn.Parameter(theta0.clone())
    o = Adafactor([ours])
    ours.grad = grads[0].clone()
    o.step()
    torch.testing.assert_close(ours.detach().double(), want, rtol=1e-5, atol=1e-9)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(4)
    theta0 = torch.randn(130, 128)
    grads = _grads((130, 128), 6, seed=5)

    def run(ps, opt, gs):
        for g in gs:
            ps.grad = g.clone()
            opt.step()

    a = torch.nn.Parameter(theta0.clone())
    oa = Adafactor([a])
    run(a, oa, grads)
    b = torch.nn.Parameter(theta0.clone())
    ob = Adafactor([b])
    run(b, ob, grads[:3])
    c = torch.nn.Parameter(b.detach().clone())
    oc = Adafactor([c])
    oc.load_state_dict(ob.state_dict())
    run(c, oc, grads[3:])
    assert torch.equal(a, c)


def test_config_uses_ours():
    from omegaconf import OmegaConf

    from conftest import CONF

    assert (
        OmegaConf.load(CONF / "optimizer" / "adafactor.yaml")["_target_"]
        == "runner.optim.adafactor.Adafactor"
    )
