"""Derived-optimizer tricks (conf/derived/): Lookahead, EMA of weights, layer adaptation — each
against a direct computation, through the real engine, and through a checkpoint round-trip."""

from __future__ import annotations

import pytest
import torch

from conftest import FAST, conf_options, read_rows, train_run

FP32 = ["trainer.precision=fp32", "trainer.device=cpu"]


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (32,), generator=g
    )


def _grads(params_list, model_fn, x, y):
    loss = torch.nn.functional.cross_entropy(model_fn(params_list, x), y)
    return torch.autograd.grad(loss, params_list)


def _functional(params, x):
    w1, b1, w2, b2 = params
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


def _train(model, opt, steps, x, y, after_step=None):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if after_step:
            after_step()


# -- Lookahead ---------------------------------------------------------------------------------


def test_lookahead_equals_the_formula():
    from runner.tricks.lookahead import Lookahead

    lr, k, alpha, steps = 0.3, 5, 0.5, 12
    model = _model().double()
    x, y = _data()
    init = [p.detach().clone() for p in model.parameters()]
    la = Lookahead(k=k, alpha=alpha)
    opt = la.wrap_optimizer(torch.optim.SGD(model.parameters(), lr=lr))
    assert isinstance(opt, torch.optim.Optimizer)  # what LambdaLR and GradScaler need
    _train(model, opt, steps, x, y)

    fast, slow = [t.clone() for t in init], [t.clone() for t in init]
    for t in range(1, steps + 1):
        g = _grads(fast_req := [f.clone().requires_grad_() for f in fast], _functional, x, y)
        fast = [f.detach() - lr * gi for f, gi in zip(fast_req, g)]
        if t % k == 0:  # Theta <- Theta + alpha (theta - Theta); theta <- Theta
            slow = [s + alpha * (f - s) for s, f in zip(slow, fast)]
            fast = [s.clone() for s in slow]
    for p, f in zip(model.parameters(), fast):
        torch.testing.assert_close(p.detach(), f, rtol=0, atol=1e-10)
    assert la.steps == steps
    for s, r in zip(la.slow, slow):
        torch.testing.assert_close(s, r, rtol=0, atol=1e-10)


def test_lookahead_with_lr_scheduler_and_fused_adamw():
    """The optimizer stays a real torch optimizer: LambdaLR and the fused kernel keep working."""
    from runner.tricks.lookahead import Lookahead

    model = _model()
    x, y = _data()
    opt = Lookahead(k=2).wrap_optimizer(torch.optim.AdamW(model.parameters(), lr=0.01, fused=True))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    _train(model, opt, 4, x.float(), y, after_step=sched.step)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 / 5)


# -- EMA ---------------------------------------------------------------------------------------


class _S:  # the part of engine.State the EMA trick reads
    def __init__(self, model):
        self.raw_model = model


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_equals_the_formula(warmup):
    from runner.tricks.ema import EMA

    decay, steps = 0.9, 7
    model = _model().double()
    x, y = _data()
    ema = EMA(decay=decay, warmup=warmup)
    ema.setup(_S(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    avg = [p.detach().clone() for p in model.parameters()]  # ema_0 = theta_0
    t = 0

    def after():
        nonlocal avg, t
        ema.on_step_end(None)
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        avg = [d * a + (1 - d) * p.detach() for a, p in zip(avg, model.parameters())]
        t += 1

    _train(model, opt, steps, x, y, after_step=after)
    for a, e in zip(avg, ema.eval_model(None).parameters()):
        torch.testing.assert_close(e, a, rtol=0, atol=1e-12)
    assert not torch.equal(avg[0], next(model.parameters()).detach())


def test_ema_through_the_engine_best_pt_holds_ema_weights(tmp_path):
    run = tmp_path / "run"
    s = train_run(
        [*FAST, *FP32, "derived=[ema]", "derived.ema.decay=0.5", "trainer.eval_every=6"], run
    )
    assert s["status"] == "completed", s.get("error")
    rows = read_rows(run)
    ev = [r for r in rows if "val/acc" in r]
    assert ev and all(k in ev[-1] for k in ("val/raw/acc", "val/raw/loss", "test/raw/acc"))
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    (key,) = [k for k in last["tricks"] if k.endswith(":ema")]
    ema_weights = last["tricks"][key]["model"]
    assert best["step"] == 6
    for name, v in best["model"].items():
        assert torch.equal(v, ema_weights[name]), name
    assert any(not torch.equal(v, last["model"][n]) for n, v in best["model"].items())
    assert s["best/val/acc"] == ev[-1]["val/acc"]  # best/* are the EMA model's figures


def test_ema_decay_zero_evaluates_the_raw_weights(tmp_path):
    s = train_run([*FAST, *FP32, "derived=[ema]", "derived.ema.decay=0.0"], tmp_path / "r")
    assert s["status"] == "completed", s.get("error")
    rows = [r for r in read_rows(tmp_path / "r") if "val/acc" in r]
    for r in rows:
        assert r["val/acc"] == r["val/raw/acc"] and r["val/loss"] == pytest.approx(
            r["val/raw/loss"], abs=1e-12
        )


# -- layer adaptation --------------------------------------------------------------------------


def _lamb_direct(init, x, y, steps, lr, betas, eps, wd, adapt_1d):
    """LAMB: u = m_hat / (sqrt(v_hat) + eps) + wd theta; theta <- theta - lr ||theta||/||u|| u."""
    b1, b2 = betas
    ps = [t.clone() for t in init]
    m = [torch.zeros_like(t) for t in ps]
    v = [torch.zeros_like(t) for t in ps]
    for t in range(1, steps + 1):
        g = _grads([p.clone().requires_grad_() for p in ps], _functional, x, y)
        new = []
        for i, (p, gi) in enumerate(zip(ps, g)):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            d = wd if p.ndim >= 2 else 0.0
            u = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps) + d * p
            r = 1.0
            if p.ndim >= 2 or adapt_1d:
                pn, un = p.norm(), u.norm()
                r = (pn / un) if pn > 0 and un > 0 else 1.0
            new.append(p - lr * r * u)
        ps = new
    return ps


@pytest.mark.parametrize("adapt_1d", [False, True])
def test_layer_adapt_on_adamw_is_lamb(adapt_1d):
    from runner.tricks.layer_adapt import LayerAdapt

    lr, betas, eps, wd = 0.01, (0.9, 0.999), 1e-8, 0.1
    model = _model().double()
    x, y = _data()
    init = [p.detach().clone() for p in model.parameters()]
    groups = [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": wd},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    opt = LayerAdapt(adapt_bias_and_norm=adapt_1d).wrap_optimizer(opt)
    _train(model, opt, 5, x, y)
    ref = _lamb_direct(init, x, y, 5, lr, betas, eps, wd, adapt_1d)
    for p, r in zip(model.parameters(), ref):
        torch.testing.assert_close(p.detach(), r, rtol=1e-9, atol=1e-12)


def test_layer_adapt_on_sgd_steps_lr_times_the_weight_norm():
    from runner.tricks.layer_adapt import LayerAdapt

    model = _model().double()
    x, y = _data()
    w0 = model[0].weight.detach().clone()
    opt = LayerAdapt(max_ratio=None).wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    _train(model, opt, 1, x, y)
    step = model[0].weight.detach() - w0
    assert step.norm().item() == pytest.approx(0.1 * w0.norm().item(), rel=1e-12)


def test_layer_adapt_max_ratio_caps_the_ratio():
    from runner.tricks.layer_adapt import trust_ratio

    theta, step = torch.full((4,), 3.0), torch.full((4,), 0.001)
    assert trust_ratio(theta, step, lr=0.1).item() == pytest.approx(300.0)
    assert trust_ratio(theta, step, lr=0.1, max_ratio=10.0).item() == 10.0
    assert trust_ratio(torch.zeros(4), step, lr=0.1).item() == 1.0
    assert trust_ratio(theta, torch.zeros(4), lr=0.1).item() == 1.0


# -- every derived option: runs, and its state survives a checkpoint ----------------------------

DERIVED = conf_options("derived")


@pytest.mark.parametrize("option", DERIVED)
def test_derived_option_state_round_trip(option):
    """state_dict -> fresh trick -> load_state_dict gives the same continuation."""
    from runner import build
    from runner.config import compose

    cfg = compose([f"derived=[{option}]"])
    x, y = _data()
    x = x.float()

    def make():
        (trick,) = build.tricks(cfg)
        model = _model()
        opt = trick.wrap_optimizer(torch.optim.AdamW(model.parameters(), lr=0.05))
        trick.setup(_S(model))
        return trick, model, opt

    def steps(trick, model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            trick.on_step_end(None)

    t1, m1, o1 = make()
    steps(t1, m1, o1, 7)
    t2, m2, o2 = make()
    steps(t2, m2, o2, 3)
    sd_t, sd_m, sd_o = t2.state_dict(), m2.state_dict(), o2.state_dict()
    t3, m3, o3 = make()
    m3.load_state_dict(sd_m)
    o3.load_state_dict(sd_o)
    t3.load_state_dict(sd_t)
    steps(t3, m3, o3, 4)
    for a, b in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(a, b)
    ev1, ev3 = t1.eval_model(None), t3.eval_model(None)
    if ev1 is not None:
        for a, b in zip(ev1.parameters(), ev3.parameters()):
            assert torch.equal(a, b)


def test_derived_options_resume_equals_uninterrupted(tmp_path):
    """Through the engine, every derived option at once: 3 steps + resume to 7 == 7 steps (each
    trick's state is checkpointed; 7 steps cross Lookahead's k = 5 sync after the resume point)."""
    base = [
        *FP32,
        f"derived=[{','.join(DERIVED)}]",
        "schedule=constant",
        "trainer.eval_every=3",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.batch_size=32",
        "derived.ema.decay=0.5",
    ]
    full = train_run([*base, "trainer.max_steps=7"], tmp_path / "full")
    assert full["status"] == "completed", full.get("error")
    part = tmp_path / "part"
    assert train_run([*base, "trainer.max_steps=3"], part)["status"] == "completed"
    res = train_run([*base, "trainer.max_steps=7", "resume=true"], part)
    assert res["status"] == "completed", res.get("error")
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["tricks"].keys() == b["tricks"].keys()
    _assert_same(a["tricks"], b["tricks"])
    ra = [r for r in read_rows(tmp_path / "full") if "val/acc" in r]
    rb = [r for r in read_rows(part) if "val/acc" in r]
    assert [r["val/acc"] for r in ra] == [r["val/acc"] for r in rb]


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("derived", ["[ema]", "[lookahead]"])
def test_no_op_settings_train_bit_identically(derived, tmp_path):
    """EMA never touches the trained weights (raw metrics = a run without it); Lookahead with
    alpha = 1 syncs the slow weights to the fast ones, a no-op."""
    base = [*FAST, *FP32]
    extra = ["derived.lookahead.alpha=1.0"] if "lookahead" in derived else []
    a = train_run(base, tmp_path / "plain")
    b = train_run([*base, f"derived={derived}", *extra], tmp_path / "trick")
    assert a["status"] == b["status"] == "completed"
    ma = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=True)["model"]
    mb = torch.load(tmp_path / "trick" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    ra = [r for r in read_rows(tmp_path / "plain") if "val/acc" in r]
    rb = [r for r in read_rows(tmp_path / "trick") if "val/acc" in r]
    raw = "val/raw/acc" if "ema" in derived else "val/acc"
    assert [r["val/acc"] for r in ra] == [r[raw] for r in rb]
