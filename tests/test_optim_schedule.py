"""Learning-rate schedules (conf/schedule/): the piecewise-linear {step: multiplier} form and
warmup+linear against direct computations, through LambdaLR and through the engine's logged lr."""

from __future__ import annotations

import pytest
import torch

from conftest import conf_options, read_rows, train_run


def _direct_piecewise(points: dict, s: float) -> float:
    """bert4keras piecewise_linear: (0, 0) implied, linear between points, constant after."""
    pts = sorted(points.items())
    if pts[0][0] != 0:
        pts = [(0, 0.0)] + pts
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= s < x1:
            return y0 + (y1 - y0) * (s - x0) / (x1 - x0)
    return pts[-1][1]


@pytest.mark.parametrize("points", [{1000: 1.0, 2000: 0.1}, {0: 0.5, 10: 1.0, 30: 0.0}, {5: 2.0}])
def test_piecewise_equals_direct(points):
    from runner.schedule import piecewise

    f = piecewise(5000, points)
    for s in [0, 1, 3, 5, 7, 10, 20, 29, 30, 31, 500, 999, 1000, 1500, 2000, 4000]:
        assert f(s) == pytest.approx(_direct_piecewise(points, s), abs=1e-12), s


def test_piecewise_forms_agree():
    from runner.schedule import piecewise

    a = piecewise(100, {10: 1, 60: 0.1})
    b = piecewise(100, "10:1,60:0.1")
    c = piecewise(100, [[10, 1], [60, 0.1]])
    d = piecewise(100, {0.1: 1, 0.6: 0.1}, unit="fraction")
    for s in range(0, 120, 3):
        assert a(s) == b(s) == c(s) == pytest.approx(d(s), abs=1e-12)


def test_linear_with_warmup_equals_direct():
    from runner.schedule import linear

    f = linear(total_steps=110, warmup_steps=10, min_ratio=0.2)
    for s in range(0, 130):
        want = (s + 1) / 10 if s < 10 else 1 - 0.8 * min(1.0, (s - 10) / 100)
        assert f(s) == pytest.approx(want, abs=1e-12)


def test_lambdalr_applies_the_piecewise_multiplier():
    from runner.schedule import piecewise

    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, piecewise(100, {4: 1.0, 8: 0.0}))
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5 * _direct_piecewise({4: 1.0, 8: 0.0}, s) for s in range(10)])


def test_engine_logs_the_piecewise_lr(tmp_path):
    run = tmp_path / "r"
    s = train_run(
        [
            "schedule=piecewise",
            "schedule.unit=steps",
            "schedule.points='4:1,8:0.5'",
            "trainer.max_steps=10",
            "trainer.log_every=1",
            "trainer.eval_every=10",
            "trainer.progress=false",
            "trainer.batch_size=32",
            "optimizer.lr=0.01",
        ],
        run,
    )
    assert s["status"] == "completed", s.get("error")
    rows = [r for r in read_rows(run) if "lr" in r]
    # the lr logged at step n is the one the next update uses: base * f(n)
    for r in rows:
        assert r["lr"] == pytest.approx(0.01 * _direct_piecewise({4: 1, 8: 0.5}, r["step"]))


@pytest.mark.parametrize("option", conf_options("schedule"))
def test_every_schedule_starts_and_ends_in_range(option):
    from runner import build
    from runner.config import compose

    cfg = compose([f"schedule={option}"])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = build.schedule(cfg, opt, 200)
    fn = sched.lr_lambdas[0]
    vals = [fn(s) for s in range(201)]
    assert all(0 <= v <= 1 for v in vals) and max(vals) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "points,msg",
    [
        ("a:b", "schedule.points"),
        ({}, "schedule.points"),
        ({10: -1}, "schedule.points[10]"),
        ("10:1,10:2", "duplicate"),
        ({-5: 1}, "schedule.points step"),
    ],
)
def test_bad_points_give_one_line_config_error(points, msg):
    from runner.errors import ConfigError
    from runner.schedule import piecewise

    with pytest.raises(ConfigError) as e:
        piecewise(100, points)
    assert msg in str(e.value) and "\n" not in str(e.value)
