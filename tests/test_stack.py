"""Stacked runs (runner.stack, runner.stack_run): member k of a stack follows the solo run of its
own config (seed, lr, weight decay) to float rounding; a diverging member fails alone; the CLI's
`--stack K` writes ordinary run directories; a SIGKILLed stack resumes exactly.

Tolerance: 1e-5 relative on every logged loss and on the weights after 200 steps. The stacked
products and optimizer sum in another order than the solo kernels (1e-7 per step), so the
learning rates here are ones where training does not amplify rounding: at AdamW lr 0.01 on the
mnist1d MLP, torch's own fused and foreach AdamW already end 3e-4 apart after 200 steps
(test_stack_is_as_close_as_torchs_own_kernels).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from conftest import cli, read_rows, strip_timing

STEPS = [
    "trainer.max_steps=200",
    "trainer.eval_every=50",
    "trainer.log_every=20",
    "trainer.progress=false",
    "trainer.batch_size=64",
]
CASES = {
    "adamw": (["model.dropout=0"], [(0, 3e-3, 0.0), (1, 5e-3, 0.1), (2, 2e-3, 0.0)]),
    "sgd": (["model.dropout=0", "optimizer=sgd"], [(0, 0.02, 0.0), (3, 0.05, 0.01)]),
    "accum_schedule": (
        ["model.dropout=0", "trainer.accum_steps=2", "schedule=linear", "schedule.warmup_steps=20"],
        [(0, 3e-3, 0.0), (1, 2e-3, 0.0)],
    ),
    "cnn": (["model=cnn1d", "model.dropout=0"], [(0, 3e-3, 0.0), (1, 2e-3, 0.05)]),
    "dropout": (["model.dropout=0.2"], [(0, 3e-3, 0.0), (5, 2e-3, 0.0)]),
}


def _cfg(extra, seed, lr, wd):
    from runner.config import compose

    return compose(
        [*STEPS, *extra, f"seed={seed}", f"optimizer.lr={lr}", f"optimizer.weight_decay={wd}"]
    )


def _solo(extra, member, d: Path) -> dict:
    from runner.main import run

    return run(_cfg(extra, *member), d)


def _close(a, b, rel=1e-5) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-3)


def assert_rows_match(stacked: list, solo: list, rel=1e-5):
    """Every row's losses and metrics to `rel`; the grad norm (the norm of a sum of passes'
    gradients, PGD's three normalisations deep) to 10 x rel."""
    assert len(stacked) == len(solo) and stacked
    for r, s in zip(strip_timing(stacked), strip_timing(solo)):
        assert r.keys() == s.keys(), (r.keys(), s.keys())
        for k in r:
            tol = 10 * rel if k == "grad_norm" else rel
            assert _close(r[k], s[k], tol), (r["step"], k, r[k], s[k])


def _member_weights(first: Path, k: int) -> dict:
    ck = torch.load(first / "checkpoints" / "stack_last.pt", weights_only=True)
    return {n: v[k] for n, v in ck["model"].items()}


def _solo_weights(d: Path) -> dict:
    return torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_weights_match(a: dict, b: dict, rel=1e-4):
    """Each tensor's relative L2 distance. Adam moves a weight whose gradient is at rounding
    level (a nearly dead unit's) by ±lr whatever its size, so a few such coordinates differ by
    more than 1e-5 while the losses agree to 1e-5: the norm, not the max, is the measure."""
    assert a.keys() == b.keys()
    for n in a:
        err = float((a[n] - b[n]).norm() / b[n].norm())
        assert err <= rel, (n, err)


def assert_member_matches(d: Path, i: int) -> None:
    """Stack member i (run dir m<i>, weights in m0's stack checkpoint) = solo run solo<i>."""
    assert_rows_match(read_rows(d / f"m{i}"), read_rows(d / f"solo{i}"))
    assert_weights_match(_member_weights(d / "m0", i), _solo_weights(d / f"solo{i}"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_member_follows_its_solo_run(case, tmp_path):
    from runner.stack_run import run_stack

    extra, members = CASES[case]
    jobs = [(_cfg(extra, *m), tmp_path / f"m{i}") for i, m in enumerate(members)]
    summaries = run_stack(jobs)
    for i, m in enumerate(members):
        solo = _solo(extra, m, tmp_path / f"solo{i}")
        s = summaries[i]
        assert s["status"] == "completed" and s["stack"]["size"] == len(members)
        assert_member_matches(tmp_path, i)
        for key in ("best/val/acc", "test/acc", "best/step", "steps", "epochs"):
            assert _close(s[key], solo[key]), key
        best = torch.load(tmp_path / f"m{i}" / "checkpoints" / "best.pt", weights_only=True)
        assert best["step"] == solo["best/step"]  # solo names and shapes: a solo model loads it
        assert best["model"].keys() == _solo_weights(tmp_path / f"solo{i}").keys()


def test_stack_is_as_close_as_torchs_own_kernels(tmp_path):
    """At a learning rate where training amplifies rounding (AdamW 0.01), a member is no farther
    from its solo run than torch's fused and foreach AdamW are from each other."""
    from runner.stack_run import run_stack

    extra = ["model.dropout=0", "trainer.max_steps=100"]
    run_stack(
        [(_cfg(extra, 0, 1e-2, 0.0), tmp_path / "m0"), (_cfg(extra, 1, 1e-2, 0.0), tmp_path / "m1")]
    )
    _solo(extra, (0, 1e-2, 0.0), tmp_path / "fused")
    _solo([*extra, "optimizer.fused=false"], (0, 1e-2, 0.0), tmp_path / "foreach")
    ref = _solo_weights(tmp_path / "fused")
    gap = lambda w: max(float((w[n] - ref[n]).abs().max() / ref[n].abs().max()) for n in ref)
    torch_gap = gap(_solo_weights(tmp_path / "foreach"))
    assert gap(_member_weights(tmp_path / "m0", 0)) <= max(10 * torch_gap, 1e-5)


def test_diverging_member_fails_alone(tmp_path):
    from runner.stack_run import run_stack

    extra = ["model.dropout=0", "trainer.max_steps=60", "optimizer=sgd"]
    members = [(0, 0.02, 0.0), (1, 1e3, 0.0), (2, 0.05, 0.0)]
    summaries = run_stack([(_cfg(extra, *m), tmp_path / f"m{i}") for i, m in enumerate(members)])
    bad = summaries[1]
    assert bad["status"] == "failed" and "non-finite" in bad["error"] and bad["steps"] < 60
    on_disk = json.loads((tmp_path / "m1" / "summary.json").read_text())
    assert on_disk["status"] == "failed"
    alone = _solo(extra, members[1], tmp_path / "solo1")  # it fails alone too, at the same step
    assert alone["status"] == "failed" and alone["steps"] == bad["steps"]
    for i in (0, 2):
        assert summaries[i]["status"] == "completed"
        _solo(extra, members[i], tmp_path / f"solo{i}")
        assert_rows_match(read_rows(tmp_path / f"m{i}"), read_rows(tmp_path / f"solo{i}"))


def test_every_member_failing_fails_the_stack(tmp_path):
    from runner.stack_run import run_stack

    extra = ["model.dropout=0", "trainer.max_steps=30", "optimizer=sgd"]
    ss = run_stack([(_cfg(extra, i, 1e3, 0.0), tmp_path / f"m{i}") for i in range(2)])
    assert [s["status"] for s in ss] == ["failed", "failed"]


def test_unstackable_sets_are_refused_with_the_reason():
    from runner.stack import NotStackable
    from runner.stack_run import Member, build_state

    cases = {
        "model.hidden": ([], ["model.hidden=50"]),
        "reg": (["reg=vat"], ["reg=vat"]),
        "optimizer": (["optimizer=adafactor"], ["optimizer=adafactor"]),
    }
    for why, (a, b) in cases.items():
        cfgs = [_cfg(a, 0, 1e-3, 0.0), _cfg(b, 1, 1e-3, 0.0)]
        members = [
            Member(cfg=c, run_dir=Path("/nonexistent"), config={}, index=i)
            for i, c in enumerate(cfgs)
        ]
        with pytest.raises(NotStackable, match=why.split(".")[0]):
            build_state(members)


SWEEP = [
    "trainer.max_steps=30",
    "trainer.eval_every=15",
    "trainer.log_every=5",
    "trainer.checkpoint_every=4",
    "trainer.batch_size=64",
    "model.dropout=0.1",
]


def test_cli_stack_sweep_writes_ordinary_run_dirs(tmp_path):
    """`tricks train -m ... --stack 3`: seeds x lr stacked (6 jobs: stacks of 3), a job that
    cannot share (vat) solo; every job an ordinary run dir, the same rows as a plain sweep."""
    args = ["-m", *SWEEP, "seed=0,1,2", "optimizer.lr=0.003,0.002"]
    r = cli(["train", *args, "--stack", "3", "hydra.sweep.dir=st"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli(["train", *args, "hydra.sweep.dir=solo"], tmp_path)
    assert r.returncode == 0, r.stderr
    for j in range(6):
        d, s = tmp_path / "st" / str(j), tmp_path / "solo" / str(j)
        summ = json.loads((d / "summary.json").read_text())
        assert summ["status"] == "completed" and summ["stack"]["size"] == 3
        assert (d / "config.yaml").read_text() == (s / "config.yaml").read_text()
        assert_rows_match(read_rows(d), read_rows(s))
    r = cli(
        ["train", "-m", *SWEEP, "seed=0,1", "reg=vat", "--stack", "2", "hydra.sweep.dir=f"],
        tmp_path,
    )
    assert r.returncode == 0 and "run solo" in r.stderr, r.stderr
    assert "stack" not in json.loads((tmp_path / "f" / "0" / "summary.json").read_text())


def test_cli_stack_bad_input_fails_job_by_job(tmp_path):
    """Bad input in a stacked sweep: the stack is not built, each job runs solo and fails with
    its one error line and a failed summary.json, as in a plain sweep."""
    args = ["train", "-m", "trainer.max_steps=4", "model.hidden=-1", "seed=0,1", "--stack", "2"]
    r = cli([*args, "hydra.sweep.dir=bad"], tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("error: model.hidden") == 2, r.stderr
    for j in (0, 1):
        s = json.loads((tmp_path / "bad" / str(j) / "summary.json").read_text())
        assert s["status"] == "failed" and "model.hidden" in s["error"]


def test_cli_stack_needs_a_sweep(tmp_path):
    r = cli(["train", "--stack", "2", "seed=1"], tmp_path)
    assert r.returncode == 2 and "--stack" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_sigkilled_stack_resumes_exactly(tmp_path):
    """SIGKILL after step 18 (mid-epoch, checkpoint at 16): re-running the sweep resumes the
    stack from its checkpoint; every member's rows and figures equal an uninterrupted stack's
    (dropout on: the members' generators are restored)."""
    args = ["train", "-m", *SWEEP, "seed=0,1,2", "--stack", "3"]
    r = cli([*args, "hydra.sweep.dir=whole"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli([*args, "hydra.sweep.dir=cut"], tmp_path, env={"TRICKS_TEST_KILL_AT_STEP": "18"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not (tmp_path / "cut" / "0" / "summary.json").exists()
    r = cli([*args, "hydra.sweep.dir=cut"], tmp_path)
    assert r.returncode == 0, r.stderr
    for j in range(3):
        a, b = tmp_path / "whole" / str(j), tmp_path / "cut" / str(j)
        assert strip_timing(read_rows(a)) == strip_timing(read_rows(b))
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sb["resumed"] and sb["test/acc"] == sa["test/acc"] and sb["steps"] == 30


# -- tricks and optimizers: every stackable trick, member strengths differing ------------------


def _trick_options() -> list[tuple]:
    """(group, option, class) of every trick option of conf/ (tricks declare `stackable`)."""
    from runner.config import TRICK_GROUPS, options
    from runner.facts import trick_class

    out = []
    for group in TRICK_GROUPS:
        for option in options(group):
            cls = trick_class(group, option)
            if cls is not None:
                out.append((group, option, cls))
    return out


TRICKS = _trick_options()
STACKABLE = [(g, o) for g, o, cls in TRICKS if cls.stackable]
#: member 1's strength where half the default would not exercise the trick
STRENGTH = {"flooding": 1.2, "norm": 0.3, "adaptive": 0.3}
#: what a trick needs to do anything (R-Drop compares two dropout draws)
NEEDS = {"rdrop": ["model.dropout=0.1"]}


def test_every_trick_says_whether_it_stacks():
    for group, option, cls in TRICKS:
        own = [k for k in cls.__mro__ if k.__module__ == cls.__module__]
        assert any("stackable" in vars(k) for k in own), f"{group}={option} does not declare it"
    assert {o for _, o in STACKABLE} >= {"flooding", "label_smoothing", "noise", "norm", "value"}


def _trick_overrides(group: str, option: str, member: int) -> list[str]:
    from runner.facts import trick_class

    cls = trick_class(group, option)
    sel = f"{group}={option}"
    if not cls.stack_keys or member == 0:
        return [sel]
    key = cls.stack_keys[0]
    path = f"{group}.{option}.{key}" if group in ("reg", "derived") else f"{group}.{key}"
    import inspect

    default = inspect.signature(cls.__init__).parameters[key].default
    return [sel, f"{path}={STRENGTH.get(option, default / 2)}"]


@pytest.mark.parametrize("group,option", STACKABLE, ids=[f"{g}={o}" for g, o in STACKABLE])
def test_stacked_trick_follows_its_solo_runs(group, option, tmp_path):
    """Member k with the trick at its own strength (the default, and another) = its solo run."""
    _check_trick(group, option, NEEDS.get(option, []), tmp_path)


def test_stacked_fgm_per_sample_follows_its_solo_runs(tmp_path):
    _check_trick("reg", "fgm", ["reg.fgm.norm=sample"], tmp_path)


def _check_trick(group: str, option: str, needs: list, tmp_path: Path) -> None:
    from runner.stack_run import run_stack

    base = ["model.dropout=0", "trainer.max_steps=100"]
    members = [(0, 3e-3, 0.0), (1, 2e-3, 0.0)]
    extras = [base + _trick_overrides(group, option, i) + needs for i in range(2)]
    run_stack([(_cfg(e, *m), tmp_path / f"m{i}") for i, (e, m) in enumerate(zip(extras, members))])
    for i, (e, m) in enumerate(zip(extras, members)):
        _solo(e, m, tmp_path / f"solo{i}")
        assert_member_matches(tmp_path, i)


@pytest.mark.parametrize("opt", ["lion", "tiger"])
def test_stacked_sign_optimizers_follow_their_solo_runs(opt, tmp_path):
    from runner.stack_run import run_stack

    extra = ["model.dropout=0", "trainer.max_steps=100", f"optimizer={opt}"]
    members = [(0, 3e-4, 0.0), (1, 1e-4, 0.1)]
    run_stack([(_cfg(extra, *m), tmp_path / f"m{i}") for i, m in enumerate(members)])
    for i, m in enumerate(members):
        _solo(extra, m, tmp_path / f"solo{i}")
        assert_member_matches(tmp_path, i)


@pytest.mark.slow
def test_twenty_stacked_members_are_distributed_as_twenty_solo_runs(tmp_path):
    """With dropout, 20 stacked members and 20 solo runs (seeds 0-19): a two-sample test cannot
    tell their final test accuracies apart and each mean lies in the other's 95% CI. On CPU the
    members draw their solo runs' dropout masks, so this holds run by run; it is the check that
    matters where the draws differ (CUDA's fused dropout)."""
    from scipy import stats

    from runner.stack_run import run_stack

    extra = ["model.dropout=0.2", "trainer.max_steps=100"]
    seeds = range(20)
    stacked = run_stack([(_cfg(extra, s, 3e-3, 0.0), tmp_path / f"m{s}") for s in seeds])
    solo = [_solo(extra, (s, 3e-3, 0.0), tmp_path / f"solo{s}") for s in seeds]
    a = [s["final/test/acc"] for s in stacked]
    b = [s["final/test/acc"] for s in solo]
    assert stats.mannwhitneyu(a, b).pvalue > 0.05
    for x, y in ((a, b), (b, a)):
        lo, hi = stats.t.interval(0.95, len(y) - 1, loc=sum(y) / len(y), scale=stats.sem(y))
        assert lo <= sum(x) / len(x) <= hi
