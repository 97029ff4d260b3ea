"""Lion, Tiger and SGDW against their formulas computed directly; Lion against lion-pytorch;
parameter groups (no weight decay on biases) for every optimizer of conf/optimizer/."""

from __future__ import annotations

import pytest
import torch

from conftest import conf_options

torch.set_default_dtype(torch.float32)


def _problem(seed=0, dtype=torch.float64):
    """A random least-squares problem on a weight matrix and a bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 7, generator=g, dtype=dtype)
    y = torch.randn(64, 3, generator=g, dtype=dtype)
    w = torch.randn(7, 3, generator=g, dtype=dtype)
    b = torch.randn(3, generator=g, dtype=dtype)
    return x, y, w, b


def _loss(x, y, w, b):
    return ((x @ w + b - y) ** 2).mean() + (w**4).sum() * 0.01  # non-quadratic: grads vary


def _run_opt(make, steps, seed=0, dtype=torch.float64, groups=None):
    x, y, w, b = _problem(seed, dtype)
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    opt = make(groups(w, b) if groups else [w, b])
    for _ in range(steps):
        opt.zero_grad()
        _loss(x, y, w, b).backward()
        opt.step()
    return w.detach(), b.detach(), opt


def _lion_direct(steps, lr, beta1, beta2, wd_w, wd_b, seed=0, dtype=torch.float64):
    """u = sign(beta1 m + (1 - beta1) g); theta <- theta - lr (u + wd theta);
    m <- beta2 m + (1 - beta2) g"""
    x, y, w, b = _problem(seed, dtype)
    ms = [torch.zeros_like(w), torch.zeros_like(b)]
    ps = [w.clone(), b.clone()]
    for _ in range(steps):
        p = [t.clone().requires_grad_() for t in ps]
        grads = torch.autograd.grad(_loss(x, y, *p), p)
        new_ps, new_ms = [], []
        for t, g, m, wd in zip(ps, grads, ms, (wd_w, wd_b)):
            u = torch.sign(beta1 * m + (1 - beta1) * g)
            new_ps.append(t - lr * (u + wd * t))
            new_ms.append(beta2 * m + (1 - beta2) * g)
        ps, ms = new_ps, new_ms
    return ps


def _two_groups(wd):
    return lambda w, b: [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}]


@pytest.mark.parametrize("foreach", [True, False, None])  # None: chunked on CPU
def test_lion_k_steps_equal_the_formula(foreach):
    from runner.optim import Lion

    lr, b1, b2, wd = 0.01, 0.9, 0.99, 0.3
    w, b, opt = _run_opt(
        lambda p: Lion(p, lr=lr, betas=(b1, b2), weight_decay=wd, foreach=foreach),
        steps=12,
        groups=_two_groups(wd),
    )
    rw, rb = _lion_direct(12, lr, b1, b2, wd, 0.0)
    torch.testing.assert_close(w, rw, rtol=0, atol=1e-12)
    torch.testing.assert_close(b, rb, rtol=0, atol=1e-12)
    # one state buffer per parameter: half of AdamW's two
    assert all(set(s) == {"exp_avg"} for s in opt.state.values())


@pytest.mark.parametrize("maximize", [False, True])
def test_lion_cpu_chunks_are_bit_identical_to_the_reference_loop(maximize):
    """The CPU path walks each parameter larger than a chunk in chunks through one scratch
    buffer (no temporary as large as the model), the rest with foreach: chunks smaller than,
    between and larger than the tensors (all chunked, some, none), a non-contiguous
    parameter, 5 steps: bit for bit the per-tensor loop."""
    from runner.optim import lion_update

    g = torch.Generator().manual_seed(3)
    shapes = [(13, 7), (5,), (64,), (3, 4, 5)]

    def state():
        ps = [torch.randn(s, generator=g) for s in shapes]
        ps.append(torch.randn(6, 4, generator=g).t())  # non-contiguous
        return ps, [torch.zeros_like(p) for p in ps]

    ps0, ms0 = state()
    grads = [[torch.randn_like(p) for p in ps0] for _ in range(5)]
    kw = dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=0.3, maximize=maximize)
    ref_p, ref_m = [p.clone() for p in ps0], [m.clone() for m in ms0]
    for gs in grads:
        lion_update(ref_p, gs, ref_m, foreach=False, **kw)
    for chunk in (1, 5, 64, 1 << 18):
        ps, ms = [p.clone() for p in ps0], [m.clone() for m in ms0]
        for gs in grads:
            lion_update(ps, gs, ms, foreach=None, chunk=chunk, **kw)
        assert all(torch.equal(a, b) for a, b in zip(ps, ref_p)), chunk
        assert all(torch.equal(a, b) for a, b in zip(ms, ref_m)), chunk
    ps, ms = [p.clone() for p in ps0], [m.clone() for m in ms0]
    for gs in grads:  # and the foreach form (what runs on a GPU, and ran on CPU before)
        lion_update(ps, gs, ms, foreach=True, **kw)
    assert all(torch.equal(a, b) for a, b in zip(ps + ms, ref_p + ref_m))
    assert not torch.equal(ref_p[0], ps0[0])  # it moved


def test_lion_float32_matches_formula_within_1e_6():
    from runner.optim import Lion

    w, b, _ = _run_opt(
        lambda p: Lion(p, lr=0.003, betas=(0.9, 0.99), weight_decay=0.1),
        steps=10,
        dtype=torch.float32,
    )
    rw, rb = _lion_direct(10, 0.003, 0.9, 0.99, 0.1, 0.1, dtype=torch.float32)
    torch.testing.assert_close(w, rw, rtol=0, atol=1e-6)
    torch.testing.assert_close(b, rb, rtol=0, atol=1e-6)


def test_tiger_is_sign_of_the_updated_momentum():
    from runner.optim import Tiger

    lr, beta, wd = 0.01, 0.965, 0.2
    w, b, _ = _run_opt(
        lambda p: Tiger(p, lr=lr, beta=beta, weight_decay=wd), steps=12, groups=_two_groups(wd)
    )
    # Tiger's own form: m <- beta m + (1 - beta) g; theta <- theta - lr (sign(m) + wd theta)
    x, y, rw, rb = _problem()
    ms = [torch.zeros_like(rw), torch.zeros_like(rb)]
    ps = [rw.clone(), rb.clone()]
    for _ in range(12):
        p = [t.clone().requires_grad_() for t in ps]
        grads = torch.autograd.grad(_loss(x, y, *p), p)
        ms = [beta * m + (1 - beta) * g for m, g in zip(ms, grads)]
        ps = [t - lr * (torch.sign(m) + d * t) for t, m, d in zip(ps, ms, (wd, 0.0))]
    torch.testing.assert_close(w, ps[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(b, ps[1], rtol=0, atol=1e-12)


def test_lion_equals_lion_pytorch():
    from lion_pytorch import Lion as RefLion

    from runner.optim import Lion

    kw = dict(lr=0.005, betas=(0.9, 0.99), weight_decay=0.5)
    ours = _run_opt(lambda p: Lion(p, **kw), steps=15, dtype=torch.float32)
    ref = _run_opt(lambda p: RefLion(p, **kw), steps=15, dtype=torch.float32)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=0, atol=1e-6)
    assert not torch.equal(ours[0], _problem(dtype=torch.float32)[2])  # it did move


def test_lion_state_dict_round_trip_continues_identically():
    from runner.optim import Lion

    x, y, w0, b0 = _problem()

    def run(split):
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        opt = Lion([w, b], lr=0.01)
        for i in range(8):
            if i == split:
                sd = opt.state_dict()
                opt = Lion([w, b], lr=0.01)
                opt.load_state_dict(sd)
            opt.zero_grad()
            _loss(x, y, w, b).backward()
            opt.step()
        return w.detach()

    assert torch.equal(run(split=-1), run(split=4))


def test_sgdw_decoupled_weight_decay_and_nesterov_equal_the_formula():
    from runner.optim import SGDW

    lr, mu, wd = 0.05, 0.9, 0.1
    w, b, _ = _run_opt(
        lambda p: SGDW(p, lr=lr, momentum=mu, nesterov=True, weight_decay=wd),
        steps=6,
        groups=_two_groups(wd),
    )
    x, y, rw, rb = _problem()
    ps, bufs = [rw.clone(), rb.clone()], [None, None]
    for _ in range(6):
        p = [t.clone().requires_grad_() for t in ps]
        grads = torch.autograd.grad(_loss(x, y, *p), p)
        new = []
        for i, (t, g, d) in enumerate(zip(ps, grads, (wd, 0.0))):
            t = t * (1 - lr * d)  # decoupled, as AdamW
            bufs[i] = g.clone() if bufs[i] is None else mu * bufs[i] + g
            new.append(t - lr * (g + mu * bufs[i]))  # torch's Nesterov form
        ps = new
    torch.testing.assert_close(w, ps[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(b, ps[1], rtol=0, atol=1e-12)


def test_sgdw_runs_step_hooks_once():
    from runner.optim import SGDW

    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # torch hooks SGD.step on first use
    p = torch.zeros(3, requires_grad=True)
    opt = SGDW([p], lr=0.1, weight_decay=0.1)
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    p.grad = torch.ones(3)
    opt.step()
    assert len(calls) == 1


@pytest.mark.parametrize("option", conf_options("optimizer"))
@pytest.mark.parametrize("decay_bias_and_norm", [False, True])
def test_param_groups_decay_weights_only_for_every_optimizer(option, decay_bias_and_norm):
    """Zero gradients: only the decoupled decay moves the weights, theta * (1 - lr * wd);
    biases and norm weights stay unless decay_bias_and_norm."""
    from runner import build
    from runner.config import compose

    cfg = compose(
        [
            f"optimizer={option}",
            "optimizer.weight_decay=0.1",
            f"optimizer.decay_bias_and_norm={str(decay_bias_and_norm).lower()}",
        ]
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build.optimizer(cfg, model, fused_ok=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    lr = cfg.optimizer.lr
    for n, p in model.named_parameters():
        decayed = p.ndim >= 2 or decay_bias_and_norm
        expect = before[n] * (1 - lr * 0.1) if decayed else before[n]
        torch.testing.assert_close(p.detach(), expect, rtol=0, atol=1e-7, msg=f"{option}: {n}")


@pytest.mark.parametrize("option,fused_ok", [("adamw", True), ("adamw", False), ("sgd", True)])
def test_fused_kernel_chosen_when_supported(option, fused_ok):
    from runner import build
    from runner.config import compose

    cfg = compose([f"optimizer={option}"])
    opt = build.optimizer(cfg, torch.nn.Linear(3, 2), fused_ok=fused_ok)
    assert bool(opt.defaults.get("fused")) is fused_ok
