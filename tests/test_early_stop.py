"""Early stopping (trainer.patience, trainer.min_delta; runner.early_stop): the run stops at the
evaluation the rule names on an uninterrupted run's own curve, a run stopped and resumed stops at
the same step with the same rows, every DDP rank stops at the same step, and it is off by
default."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from runner.config import compose
from runner.early_stop import stop_step

from conftest import ROOT, cli, read_rows, strip_timing, train_run

RUN = [
    "trainer.max_steps=60",
    "trainer.eval_every=5",
    "trainer.log_every=5",
    "trainer.progress=false",
    "trainer.batch_size=32",
]
PATIENCE = 3


def _by_hand(rows: list[dict], patience: int, min_delta: float = 0.0) -> int | None:
    """The rule, written out over an uninterrupted run's val/acc curve."""
    best, bad = -math.inf, 0
    for r in rows:
        if "val/acc" not in r:
            continue
        if r["val/acc"] > best + min_delta:
            best, bad = r["val/acc"], 0
        else:
            bad += 1
            if bad == patience:
                return r["step"]
    return None


def test_the_rule():
    v = [(1, 0.5), (2, 0.4), (3, 0.6), (4, 0.6), (5, 0.59), (6, 0.7)]
    assert stop_step(v, 2) == 5  # a tie is no gain; the count restarts after step 3's gain
    assert stop_step(v, 3) is None
    assert stop_step(v, 1) == 2
    # min_delta: a gain must exceed it, and the reference moves only on such a gain
    creep = [(1, 0.50), (2, 0.505), (3, 0.508), (4, 0.509)]
    assert stop_step(creep, 3) is None and stop_step(creep, 3, min_delta=0.01) == 4
    assert stop_step([(1, 0.5), (2, float("nan")), (3, 0.4)], 2) == 3


def test_off_by_default():
    t = compose([]).trainer
    assert t.patience is None and t.min_delta == 0.0
    assert compose(["model=minilm", "dataset=tweets"]).trainer.patience is None


@pytest.fixture(scope="module")
def curve(tmp_path_factory) -> tuple[Path, int]:
    """An uninterrupted run without early stopping, and the step the rule stops it at."""
    d = tmp_path_factory.mktemp("es") / "full"
    s = train_run(RUN, d)
    assert s["status"] == "completed" and s["steps"] == 60 and s["stopped_early"] is False
    want = _by_hand(read_rows(d), PATIENCE)
    # the case must stop, after a gain that reset the count, before the end
    assert want is not None and 15 < want < 60, read_rows(d)
    return d, want


def _same_rows_until(got: Path, full: Path, step: int) -> None:
    want = [r for r in strip_timing(read_rows(full)) if r["step"] <= step]
    assert strip_timing(read_rows(got)) == want


def test_stops_at_the_right_evaluation_and_resumes_exactly(curve, tmp_path):
    full, want = curve
    args = [*RUN, f"trainer.patience={PATIENCE}"]

    d = tmp_path / "run"
    r = cli(["train", *args, f"hydra.run.dir={d}"], tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "completed" and s["stopped_early"] is True
    assert s["steps"] == want and s["planned_steps"] == 60
    assert "(stopped early)" in r.stdout
    _same_rows_until(d, full, want)  # the same training up to the stop, then nothing

    # stopped by SIGTERM before the stop, then resumed: the same stop, the same rows
    e = tmp_path / "resumed"
    kill = {"TRICKS_TEST_KILL_AT_STEP": f"{want - 13}:TERM"}
    r = cli(["train", *args, f"hydra.run.dir={e}"], tmp_path, env=kill)
    assert r.returncode not in (0, -signal.SIGTERM), r.stderr
    assert json.loads((e / "summary.json").read_text())["status"] == "interrupted"
    r = cli(["train", *args, "resume=true", f"hydra.run.dir={e}"], tmp_path)
    assert r.returncode == 0, r.stderr
    t = json.loads((e / "summary.json").read_text())
    assert (t["steps"], t["stopped_early"], t["resumed"]) == (want, True, True)
    assert strip_timing(read_rows(e)) == strip_timing(read_rows(d))
    assert t["best/val/acc"] == s["best/val/acc"] and t["test/acc"] == s["test/acc"]


def test_a_run_that_stopped_early_stays_stopped_on_resume(curve, tmp_path):
    """Its last checkpoint is at the stop step: resuming it trains nothing more."""
    full, want = curve
    args = [*RUN, f"trainer.patience={PATIENCE}"]
    d = tmp_path / "run"
    assert train_run(args, d)["steps"] == want
    from omegaconf import open_dict

    cfg = compose(args)
    with open_dict(cfg):
        cfg.resume = True
    from runner.main import run

    s = run(cfg, d)
    assert (s["status"], s["steps"], s["stopped_early"]) == ("completed", want, True)
    _same_rows_until(d, full, want)


def test_eval_test_best_still_gives_the_final_figures_at_the_stop(curve, tmp_path):
    full, want = curve
    s = train_run([*RUN, f"trainer.patience={PATIENCE}", "trainer.eval_test=best"], tmp_path / "r")
    last = read_rows(tmp_path / "r")[-1]
    assert last["step"] == want and "test/acc" in last
    assert s["final/test/acc"] == last["test/acc"]


def test_bad_values_are_one_error_line(tmp_path):
    for bad, allowed in (("trainer.patience=-1", ">= 0"), ("trainer.min_delta=-0.1", ">= 0")):
        r = cli(["train", bad, f"hydra.run.dir={tmp_path / 'x'}"], tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert bad.split("=")[0] in r.stderr and allowed in r.stderr
        assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_every_ddp_rank_stops_at_the_same_step(tmp_path):
    """2 gloo processes through the DDP harness (tests/test_dist.py): rank 0 alone evaluates and
    decides; both ranks stop at the step a single process with the global batch stops at, with
    the same weights. min_delta 1 makes every evaluation after the first no gain (accuracy <= 1),
    so patience 2 stops at the third evaluation."""
    import torch
    from test_dist import B, torchrun

    es = ["trainer.patience=2", "trainer.min_delta=1.0"]
    base = [o for o in RUN if "batch_size" not in o] + ["model.dropout=0.0", *es]
    (tmp_path / "spec.json").write_text(json.dumps({"es": [*base, f"trainer.batch_size={B}"]}))
    r = torchrun([str(ROOT / "tests" / "test_dist.py"), str(tmp_path)], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ref = train_run([*base, f"trainer.batch_size={2 * B}"], tmp_path / "ref")
    s = json.loads((tmp_path / "es" / "summary.json").read_text())
    assert (s["steps"], s["stopped_early"], s["world_size"]) == (15, True, 2)
    assert (ref["steps"], ref["stopped_early"]) == (15, True)
    ckpt = torch.load(tmp_path / "es" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 15  # both ranks left the loop there: the run ended, no rank hung
    a = ckpt["model"]
    b = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
