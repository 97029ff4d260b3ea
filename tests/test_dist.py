"""Data-parallel training (runner.dist): 2 gloo processes on CPU give the parameters of one process.

Two equivalences, each checked on the final weights (checkpoints/last.pt, 1e-5) and on every
logged metric row (rank 0's rows hold the mean over ranks):

- "global": DDP with batch_size B per rank == one process with batch_size 2B. Holds for every
  computation that is a mean over independent samples with no randomness (dropout 0): the
  baseline, accumulation with no_sync, clipping of the all-reduced gradient, FGM with a per-sample
  norm.
- "accum": DDP with B per rank == one process with batch_size B and accum_steps=2, whose second
  micro-batch replays the first one's RNG state (`SameRng`, a test-only trick): DDP ranks start
  every step from the same RNG state, so both ranks draw the same dropout masks. This holds for
  everything a micro-batch computes on its own (dropout, R-Drop, FGM's whole-tensor norm, ...), so
  every option in conf/reg/ is checked this way, plus R-Drop and FGM by their modules.

All DDP runs share one torchrun launch of this file (its __main__ below), so the cost of starting
2 processes is paid once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runner.tricks import Trick

from conftest import ROOT, conf_options, read_rows, strip_timing

B = 16  # per-rank batch
BASE = [
    "trainer.max_steps=5",
    "trainer.eval_every=3",
    "trainer.log_every=2",
    "trainer.progress=false",
    "model.hidden=32",
    "schedule=constant",
]
NO_DROPOUT = ["model.dropout=0.0"]
# a tiny text model, for the forms that perturb an embedding table
TEXT = [
    "dataset=tweets",
    "model=transformer",
    "model.width=16",
    "model.depth=1",
    "model.heads=2",
    "dataset.train_size=64",
    "dataset.val_size=16",
    "dataset.test_size=16",
    "dataset.max_len=16",
]


class SameRng(Trick):
    """Test-only: every micro-batch of a step starts from the RNG state the first one started
    from, as every DDP rank does."""

    order = -1000

    def __init__(self, order=None):
        super().__init__(order)
        self.saved = None

    def loss(self, state, batch, next):
        if not state.sync_grads:  # not the last micro-batch (the first, with accum_steps=2)
            self.saved = torch.get_rng_state()
        elif self.saved is not None:
            torch.set_rng_state(self.saved)
            self.saved = None
        return next(batch)


class RankLocal(Trick):
    """Test-only: a trick with rank-local behaviour (it shifts rank 1's gradients after the
    all-reduce), the kind of bug that silently drifts DDP replicas apart."""

    def on_grads(self, state):
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            for p in state.params:
                p.grad.add_(1.0)


def _module_exists(name: str) -> bool:
    return (ROOT / "runner" / "tricks" / f"{name}.py").exists()


# name -> (mode, overrides shared by the DDP run and its reference, trick module needed)
CASES = {
    "baseline": ("global", NO_DROPOUT, None),
    "accum2": ("global", NO_DROPOUT + ["trainer.accum_steps=2"], None),
    "clip": ("global", NO_DROPOUT + ["clip=norm", "clip.max_norm=0.05"], None),
    "fgm-sample": (
        "global",
        NO_DROPOUT + ["+reg.fgm._target_=runner.tricks.fgm.FGM", "+reg.fgm.norm=sample"],
        "fgm",
    ),
    "dropout": ("accum", [], None),
    "rdrop": ("accum", ["+reg.rdrop._target_=runner.tricks.rdrop.RDrop"], "rdrop"),
    "fgm": ("accum", ["+reg.fgm._target_=runner.tricks.fgm.FGM"], "fgm"),
    "fgm-adv": ("accum", ["+reg.fgm._target_=runner.tricks.fgm.FGM", "+reg.fgm.mode=adv"], "fgm"),
    "pgd-adv": ("accum", ["+reg.pgd._target_=runner.tricks.pgd.PGD", "+reg.pgd.mode=adv"], "pgd"),
    "fgm-table": ("accum", TEXT + ["reg=[fgm]", "reg.fgm.target=table", "reg.fgm.mode=adv"], "fgm"),
    "pgd-table": ("accum", TEXT + ["reg=[pgd]", "reg.pgd.target=table"], "pgd"),
    "lazy-text": (
        "accum",
        TEXT + ["derived=[lazy]", "optimizer=lion", "optimizer.weight_decay=0.1"],
        "lazy",
    ),
    "rdrop+fgm+clip": (
        "accum",
        [
            "+reg.rdrop._target_=runner.tricks.rdrop.RDrop",
            "+reg.fgm._target_=runner.tricks.fgm.FGM",
            "clip=norm",
            "clip.max_norm=0.05",
        ],
        "fgm",
    ),
}
# Options whose setup reads data: their DDP form matches one process with the global batch (the
# Fisher of ChildTuning-D is taken over global batches), so they are checked without dropout.
GLOBAL_ONLY = ("childtuning_d",)
for _opt in conf_options("reg"):
    CASES[f"reg={_opt}"] = (
        ("global", NO_DROPOUT + [f"reg=[{_opt}]"], None)
        if _opt in GLOBAL_ONLY
        else ("accum", [f"reg=[{_opt}]"], None)
    )
for _opt in conf_options("loss"):  # multi-label losses on multi-hot data: train/f1 all-reduced
    if _opt != "ce":
        CASES[f"loss={_opt}"] = (
            "accum",
            [
                f"loss={_opt}",
                "dataset=mnist1d_multi",
                "+reg.rdrop._target_=runner.tricks.rdrop.RDrop",
            ],
            None,
        )
CASES["semi-supervised"] = (
    "accum",
    ["dataset.labeled_fraction=0.3", "+reg.vat._target_=runner.tricks.vat.VAT"],
    None,
)
for _opt in conf_options("derived"):  # EMA, Lookahead, layer adaptation
    CASES[f"derived={_opt}"] = ("accum", [f"derived=[{_opt}]"], None)
for _opt in conf_options("clip"):  # clipping sees the all-reduced gradient of the global batch
    if _opt not in ("none", "norm"):  # none is the baseline, norm is "clip" above
        CASES[f"clip={_opt}"] = ("global", NO_DROPOUT + [f"clip={_opt}"], None)

_SKIP = {
    n: f"runner/tricks/{m}.py does not exist yet"
    for n, (_, _, m) in CASES.items()
    if m and not _module_exists(m)
}


def _base(extra: list[str]) -> list[str]:
    """BASE, without its mlp keys when the case picks another model."""
    if any(e.startswith("model=") for e in extra):
        return [o for o in BASE if not o.startswith("model.")]
    return BASE


def ddp_overrides(name: str) -> list[str]:
    mode, extra, _ = CASES[name]
    return _base(extra) + extra + [f"trainer.batch_size={B}"]


def reference_overrides(name: str) -> list[str]:
    mode, extra, _ = CASES[name]
    if mode == "global":
        return _base(extra) + extra + [f"trainer.batch_size={2 * B}"]
    return _base(extra) + extra + [f"trainer.batch_size={B}", "trainer.accum_steps=2"]


def reference_run(name: str, run_dir: Path) -> dict:
    from omegaconf import open_dict

    from runner.config import compose
    from runner.main import run

    cfg = compose(reference_overrides(name))
    if CASES[name][0] == "accum":
        with open_dict(cfg):
            if not cfg.get("reg"):
                cfg.reg = {}
            cfg.reg["samerng"] = {"_target_": f"{__name__}.SameRng"}
    return run(cfg, run_dir)


def torchrun(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Every case (and a resume) trained by 2 gloo processes, in one torchrun launch."""
    out = tmp_path_factory.mktemp("ddp")
    spec = {n: ddp_overrides(n) for n in CASES if n not in _SKIP}
    # resume under DDP: 3 steps, then resume=true to 5 in the same directory
    spec["resume-a"] = [o.replace("max_steps=5", "max_steps=3") for o in ddp_overrides("baseline")]
    spec["resume-b"] = ddp_overrides("baseline") + ["resume=true"]
    spec["diverge"] = ddp_overrides("baseline") + [f"+reg.bad._target_={__name__}.RankLocal"]
    # SIGTERM reaches rank 1 only, after step 1: both ranks stop at the next log step (2)
    spec["sigterm-a"] = ddp_overrides("baseline") + [
        "+reg.sig._target_=test_launch.SignalAt",
        "+reg.sig.step=1",
        "+reg.sig.sig=TERM",
        "+reg.sig.rank=1",
    ]
    spec["sigterm-b"] = spec["sigterm-a"] + ["resume=true"]
    (out / "spec.json").write_text(json.dumps(spec))
    r = torchrun([__file__, str(out)], cwd=out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_run(ddp_dir: Path, ref_dir: Path, ref_summary: dict, rows: bool = True):
    s = json.loads((ddp_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["world_size"] == 2
    assert ref_summary["status"] == "completed"
    a, b = _weights(ddp_dir), _weights(ref_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)
    if not rows:
        return
    ra, rb = strip_timing(read_rows(ddp_dir)), strip_timing(read_rows(ref_dir))
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [2, 3, 4, 5]
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], abs=1e-5), (x["step"], k)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_ddp_equals_single_process(name, ddp_runs, tmp_path):
    if name in _SKIP:
        pytest.skip(_SKIP[name])
    ref = tmp_path / "ref"
    summary = reference_run(name, ref)
    assert_same_run(ddp_runs / name, ref, summary)


@pytest.mark.slow
def test_ddp_resume_continues_exactly(ddp_runs, tmp_path):
    """3 steps, then resume=true to 5 under DDP == 5 uninterrupted steps of one process."""
    ref = tmp_path / "ref"
    summary = reference_run("baseline", ref)
    d = ddp_runs / "resume-b"
    s = json.loads((d / "summary.json").read_text())
    assert s["resumed"] is True
    assert_same_run(d, ref, summary, rows=False)  # rows differ: the first part logged step 3


@pytest.mark.slow
def test_a_signal_on_one_rank_stops_all_at_the_next_log_step(ddp_runs, tmp_path):
    """SIGTERM to rank 1 after step 1: every rank stops after step 2 (log_every=2), last.pt is
    written, and resume=true finishes with the weights of an uninterrupted run."""
    a = ddp_runs / "sigterm-a"
    s = json.loads((a / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["steps"] == 2
    assert "at step 2" in s["error"]
    assert torch.load(a / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    ref = tmp_path / "ref"
    summary = reference_run("baseline", ref)
    assert_same_run(ddp_runs / "sigterm-b", ref, summary, rows=False)


@pytest.mark.slow
def test_only_rank0_writes(ddp_runs):
    d = ddp_runs / "baseline"
    assert sorted(p.name for p in d.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
    ]
    rows = read_rows(d)
    assert len(rows) == len({r["step"] for r in rows})  # one writer: no duplicated rows
    assert {"val/acc", "test/acc"} <= set(rows[1])  # rank 0 evaluated at step 3


@pytest.mark.slow
def test_replicas_drifting_apart_fail_the_run(ddp_runs):
    s = json.loads((ddp_runs / "diverge" / "summary.json").read_text())
    assert s["status"] == "failed"
    assert "parameters differ across the 2 ranks" in s["error"] and "bad" in s["error"]


def test_batcher_shards_each_global_batch_by_rank():
    from runner.data.batching import IndexBatcher

    split = {"x": torch.arange(103).float()[:, None], "y": torch.arange(103)}
    single = IndexBatcher(split, batch_size=20, seed=3)
    ranks = [IndexBatcher(split, batch_size=10, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 5
    for epoch in (0, 1):
        for whole, r0, r1 in zip(single.epoch(epoch), ranks[0].epoch(epoch), ranks[1].epoch(epoch)):
            assert torch.equal(whole["y"], torch.cat([r0["y"], r1["y"]]))
    resumed = [b["y"] for b in ranks[1].epoch(1, start=3)]
    assert torch.equal(torch.cat(resumed), torch.cat([b["y"] for b in ranks[1].epoch(1)][3:]))


def test_sampler_for_streamed_datasets_shards_by_rank():
    from runner.dist import Dist, sampler

    data = list(range(10))
    shards = [list(sampler(data, Dist(rank=r, world_size=2), seed=1)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data and not set(shards[0]) & set(shards[1])
    one = list(sampler(data, Dist(), seed=1))
    assert sorted(one) == data and one == list(sampler(data, Dist(), seed=1))


def test_batcher_global_batch_larger_than_split_is_a_config_error():
    from runner.data.batching import IndexBatcher
    from runner.errors import ConfigError

    split = {"x": torch.zeros(30, 1), "y": torch.zeros(30, dtype=torch.long)}
    with pytest.raises(ConfigError, match=r"trainer.batch_size.*20 x 2 processes = 40"):
        IndexBatcher(split, batch_size=20, seed=0, rank=1, world_size=2)


def _driver(out: Path) -> None:
    """Run under torchrun: every case of spec.json, in order, into out/<name>."""
    import torch.distributed as dist

    from runner.config import compose
    from runner.main import run

    dist.init_process_group("gloo")
    try:
        spec = json.loads((out / "spec.json").read_text())
        for name, overrides in spec.items():
            if name.endswith("-b"):  # continue <x>-a in place, then keep a copy of its end
                a = out / (name[:-2] + "-a")
                if dist.get_rank() == 0:
                    shutil.copytree(a, out / (name[:-2] + "-a-copy"))
                dist.barrier()
                run(compose(overrides), a)
                if dist.get_rank() == 0:
                    a.rename(out / name)
                    (out / (name[:-2] + "-a-copy")).rename(a)
                dist.barrier()
                continue
            summary = run(compose(overrides), out / name)
            expected = {"diverge": "failed", "sigterm-a": "interrupted"}.get(name, "completed")
            if dist.get_rank() == 0 and summary["status"] != expected:
                raise SystemExit(f"{name}: {summary}")
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _driver(Path(sys.argv[1]))
