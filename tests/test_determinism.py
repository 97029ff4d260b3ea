"""Same seed and config -> bit-identical metrics on CPU; different seeds differ; a no-op trick
changes nothing."""

from __future__ import annotations

from conftest import read_rows, strip_timing, train_run

ARGS = [
    "trainer.max_steps=12",
    "trainer.eval_every=6",
    "trainer.log_every=3",
    "trainer.progress=false",
    "model.dropout=0.1",
]


def test_same_seed_identical(tmp_path):
    train_run(ARGS, tmp_path / "a")
    train_run(ARGS, tmp_path / "b")
    a, b = strip_timing(read_rows(tmp_path / "a")), strip_timing(read_rows(tmp_path / "b"))
    assert a == b and len(a) >= 4


def test_different_seeds_differ(tmp_path):
    train_run(ARGS + ["seed=1"], tmp_path / "a")
    train_run(ARGS + ["seed=2"], tmp_path / "b")
    a, b = strip_timing(read_rows(tmp_path / "a")), strip_timing(read_rows(tmp_path / "b"))
    assert a != b


def test_noop_trick_is_bit_identical(tmp_path, monkeypatch):
    """A trick overriding every hook with pass-throughs gives exactly the no-trick numbers."""
    from runner import build
    from runner.tricks import Trick

    class NoOp(Trick):
        def loss(self, state, batch, next):
            return next(batch)

        def backward(self, state, out, batch, next):
            next(out, batch)

        def on_grads(self, state):
            pass

        def on_step_end(self, state):
            pass

        def wrap_optimizer(self, opt):
            return opt

    train_run(ARGS, tmp_path / "plain")
    real = build.tricks
    monkeypatch.setattr(build, "tricks", lambda cfg: real(cfg) + [NoOp()])
    train_run(ARGS, tmp_path / "noop")
    assert strip_timing(read_rows(tmp_path / "plain")) == strip_timing(read_rows(tmp_path / "noop"))


def test_deterministic_mode_follows_each_jobs_config_in_one_process(tmp_path):
    """torch's deterministic mode is process-wide: a trainer.deterministic=false job after a
    deterministic one in the same process (an in-process sweep) runs with it off, and back on."""
    import torch

    from runner import engine

    saved = engine.torch_determinism()
    try:
        for i, flag in enumerate(("true", "false", "true")):
            s = train_run(
                [
                    "trainer.max_steps=2",
                    "trainer.eval_every=2",
                    "trainer.progress=false",
                    f"trainer.deterministic={flag}",
                ],
                tmp_path / str(i),
            )
            assert s["status"] == "completed"
            assert torch.are_deterministic_algorithms_enabled() == (flag == "true")
    finally:
        engine.torch_determinism(saved)
