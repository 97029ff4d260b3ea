"""Bad input, as a user types it: each case exits non-zero with exactly one line on stderr naming
the problem (and what is allowed), no traceback, and no damage: no run directory is left behind,
and an existing run directory stays byte-identical (.hydra/ included)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CONF, FAST, cli, train_run

TINY = [
    "trainer.max_steps=2",
    "trainer.progress=false",
    "trainer.batch_size=32",
    "trainer.eval_every=2",
]

# (overrides, what the one line must say). Caught by `tricks train`'s precheck before Hydra starts.
PRECHECK = [
    (["optimizer=nope"], ["optimizer: unknown option 'nope'", "allowed:", "adamw"]),
    (["model=nope"], ["model: unknown option", "allowed:"]),
    (["reg=[nope]"], ["reg: unknown option 'nope'"]),
    (["trainer.nokey=1"], ["trainer.nokey: unknown key", "allowed:", "batch_size"]),
    (["nokey=1"], ["nokey: unknown key"]),
    (["trainer.batch_size=abc"], ["trainer.batch_size: must be an integer", "'abc'"]),
    (["optimizer.lr=fast"], ["optimizer.lr: must be a number"]),
    (["seed=1.5"], ["seed: must be an integer"]),
    (["trainer.deterministic=maybe"], ["trainer.deterministic: must be true or false"]),
    (["optimizer.lr=0"], ["optimizer.lr: must be > 0"]),
    (["optimizer.lr=-0.01"], ["optimizer.lr: must be > 0"]),
    (["trainer.batch_size=0"], ["trainer.batch_size: must be > 0"]),
    (["trainer.batch_size=-8"], ["trainer.batch_size: must be > 0"]),
    (["trainer.epochs=0", "trainer.max_steps=null"], ["trainer.epochs: must be > 0"]),
    (["trainer.epochs=-1", "trainer.max_steps=null"], ["trainer.epochs: must be > 0"]),
    (["trainer.max_steps=0"], ["trainer.max_steps: must be > 0"]),
    (["trainer.on_nan=maybe"], ["trainer.on_nan", "allowed: stop, skip"]),
    (["trainer.keep_checkpoints=some"], ["trainer.keep_checkpoints", "allowed: all, best, none"]),
    (["trainer.data_on_device=maybe"], ["trainer.data_on_device", "allowed: auto, true, false"]),
    (["trainer.precision=fp8"], ["trainer.precision", "allowed:"]),
    (["resume=true"], ["resume: no checkpoint at", "/new/checkpoints/last.pt", "allowed:"]),
    (["resume=/nonexistent/last.pt"], ["resume: no checkpoint at /nonexistent/last.pt"]),
    (["-m", "optimizer.lr=0.01,-1"], ["optimizer.lr: must be > 0, got -1"]),
    # a list without brackets, a key of a trick not selected: the fix, not Hydra's message
    (
        ["reg=rdrop,fgm"],
        ["reg: rdrop,fgm without brackets is a sweep", "'reg=[rdrop,fgm]'", "add -m"],
    ),
    (["seed=0,1"], ["seed: 0,1 is a sweep", "add -m"]),
    (
        ["reg.rdrop.alpha=2"],
        ["reg.rdrop.alpha: rdrop is not selected", "'reg=[rdrop]' reg.rdrop.alpha=2"],
    ),
    (["reg=[fgm]", "reg.rdrop.alpha=2"], ["'reg=[fgm,rdrop]' reg.rdrop.alpha=2"]),
    (["reg=[fgm]", "reg.fgm.mode=blog"], ["reg.fgm.mode: got 'blog'", "allowed: both, adv"]),
    # the closest match (difflib), not Hydra's `+key=` nor "select rdrop" when it is selected
    (
        ["reg=[rdrop]", "reg.rdrop.alpah=2"],
        ["reg.rdrop.alpah: unknown key; did you mean alpha? (allowed: alpha)"],
    ),
    (["lr=-1"], ["lr: unknown key; did you mean optimizer.lr?"]),
    (["trainer.lr=0.1"], ["trainer.lr: unknown key; did you mean optimizer.lr?"]),
    (["trainer.epoch=3"], ["trainer.epoch: unknown key; did you mean epochs?", "max_steps"]),
    (["optimizer=adamx"], ["optimizer: unknown option 'adamx'; did you mean adamw?"]),
    (["reg=[rdropp]"], ["reg: unknown option 'rdropp'; did you mean rdrop?"]),
]

# Caught by the run itself (they need the data or the model built), still before any write.
AT_BUILD = [
    (["model.dropout=1.5"], ["model.dropout: must be in [0.0, 1.0)"]),
    (["model.dropout=-0.1"], ["model.dropout: must be in"]),
    (["dataset.label_noise=1.5"], ["dataset.label_noise: must be in [0.0, 1.0]"]),
    (["trainer.batch_size=100000"], ["trainer.batch_size", "larger than the train split"]),
    (
        ["reg=[fgm]", "reg.fgm.target=table"],
        ["reg.fgm.target: table: MLP has no embedding table", "model=transformer, minilm, hf"],
    ),
]


def one_error_line(r, expect: list[str]) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for e in expect:
        assert e in line, (e, line)
    return line


@pytest.mark.parametrize("args,expect", PRECHECK, ids=[" ".join(a) for a, _ in PRECHECK])
def test_precheck_rejects_with_one_line(args, expect, tmp_path):
    r = cli(
        [
            "train",
            *TINY,
            *args,
            f"hydra.run.dir={tmp_path / 'new'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
    )
    one_error_line(r, expect)
    assert r.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run dir, no sweep dir


def test_resume_true_needs_the_run_dir(tmp_path):
    r = cli(["train", *TINY, "resume=true"], tmp_path)
    one_error_line(r, ["resume: true needs the run to continue", "hydra.run.dir="])
    assert list(tmp_path.iterdir()) == []  # no runs/DATE/TIME made


@pytest.mark.parametrize("args,expect", AT_BUILD, ids=[" ".join(a) for a, _ in AT_BUILD])
def test_build_time_errors_leave_no_run_dir(args, expect, tmp_path):
    r = cli(["train", *TINY, *args, f"hydra.run.dir={tmp_path / 'new'}"], tmp_path)
    one_error_line(r, expect)
    assert not (tmp_path / "new").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = cli(
        ["train", *TINY, "model.dropout=1.5", f"hydra.run.dir={tmp_path / 'new'}"],
        tmp_path,
        env={"TRICKS_DEBUG": "1"},
    )
    assert r.returncode != 0 and "model.dropout" in r.stderr


# -- dataset files (runner/data/csv.py) ---------------------------------------------------------


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + ("\n" if rows else ""))
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(os.urandom(2000))
    return path


def _table(labels) -> list[str]:
    return ["f1,f2,label"] + [
        f"{i * 0.1:.1f},{(i % 7) * 0.3:.1f},{labels[i % len(labels)]}" for i in range(80)
    ]


DATA_CASES = {
    "missing": (lambda d: d / "missing.csv", ["dataset.path", "file not found"]),
    "empty": (lambda d: _csv(d / "empty.csv", []), ["dataset.path", "empty"]),
    "unreadable": (lambda d: _junk(d / "junk.parquet"), ["dataset.path", "cannot read"]),
    "no label column": (
        lambda d: _csv(
            d / "nolabel.csv",
            [r.replace("label", "target") for r in _table(["a", "b"])][:1] + _table(["a", "b"])[1:],
        ),
        ["dataset.label_column", "'label'"],
    ),
    "one class": (lambda d: _csv(d / "one.csv", _table(["a"])), ["one class"]),
}


@pytest.mark.skipif(not (CONF / "dataset" / "csv.yaml").exists(), reason="no csv dataset")
@pytest.mark.parametrize("case", list(DATA_CASES.values()), ids=list(DATA_CASES))
def test_bad_dataset_file(case, tmp_path):
    make, expect = case
    path = make(tmp_path)
    r = cli(
        [
            "train",
            *TINY,
            "dataset=csv",
            f"dataset.path={path}",
            "dataset.feature_columns=all",
            "model=mlp",
            f"hydra.run.dir={tmp_path / 'new'}",
        ],
        tmp_path,
    )
    one_error_line(r, expect)
    assert not (tmp_path / "new").exists()


def test_good_csv_trains(tmp_path):
    """The table the bad cases are made from is fine as it is (so they test what they say)."""
    if not (CONF / "dataset" / "csv.yaml").exists():
        pytest.skip("no csv dataset")
    path = _csv(tmp_path / "ok.csv", _table(["a", "b"]))
    s = train_run(
        TINY
        + [
            "dataset=csv",
            f"dataset.path={path}",
            "dataset.feature_columns=all",
            "model=mlp",
            "trainer.batch_size=8",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed"


# -- an existing run directory is never damaged ------------------------------------------------


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("existing") / "run"
    r = cli(["train", *FAST, "trainer.checkpoint_every=3", f"hydra.run.dir={d}"], d.parent)
    assert r.returncode == 0, r.stderr
    assert (d / ".hydra" / "config.yaml").exists() and (d / "checkpoints" / "last.pt").exists()
    return d


def _corrupt(how: str):
    def f(d: Path):
        p = d / "checkpoints" / "last.pt"
        if how == "truncated":
            p.write_bytes(p.read_bytes()[:1000])
        elif how == "random":
            p.write_bytes(os.urandom(5000))
        elif how == "missing":
            p.unlink()
        elif how == "foreign":  # a valid torch file that is not a tricks checkpoint
            import torch

            torch.save({"weights": torch.zeros(3)}, p)

    return f


DIR_CASES = {
    "truncated checkpoint": (
        _corrupt("truncated"),
        ["resume=true"],
        ["resume: checkpoint", "corrupt or unreadable"],
    ),
    "random-bytes checkpoint": (_corrupt("random"), ["resume=true"], ["corrupt or unreadable"]),
    "not a tricks checkpoint": (
        _corrupt("foreign"),
        ["resume=true"],
        ["not a tricks last.pt checkpoint"],
    ),
    "no checkpoint": (_corrupt("missing"), ["resume=true"], ["resume: no checkpoint at"]),
    "other model": (
        None,
        ["resume=true", "model.hidden=50"],
        ["checkpoint was written with model.hidden=100", "model.hidden=50", "may change on resume"],
    ),
    "other optimizer": (None, ["resume=true", "optimizer=sgd"], ["checkpoint was written with"]),
    "bad override": (None, ["optimizer.lr=-1"], ["optimizer.lr: must be > 0"]),
    "bad value found at build": (None, ["model.dropout=2"], ["model.dropout: must be in"]),
}


@pytest.mark.parametrize("case", list(DIR_CASES))
def test_existing_run_dir_stays_byte_identical(case, existing, tmp_path):
    damage, args, expect = DIR_CASES[case]
    d = tmp_path / "run"
    shutil.copytree(existing, d)
    if damage:
        damage(d)
    before = snapshot(d)
    r = cli(["train", *FAST, "trainer.checkpoint_every=3", *args, f"hydra.run.dir={d}"], tmp_path)
    one_error_line(r, expect)
    assert snapshot(d) == before


# -- property: random numeric overrides give a clean error or a finished run -------------------

NUMERIC_KEYS = [
    "optimizer.lr",
    "optimizer.weight_decay",
    "trainer.batch_size",
    "trainer.accum_steps",
    "trainer.max_steps",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.checkpoint_every",
    "model.hidden",
    "model.depth",
    "model.dropout",
    "dataset.label_noise",
    "schedule.warmup_steps",
    "seed",
]

values = st.one_of(
    st.integers(min_value=-3, max_value=5),
    st.sampled_from([0, 1, 2, 7, 64, 4000, 10**9, -(10**9)]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 0.5, 0.999, 1.0, 1.5, -0.5, 1e-12, 1e12, "abc", "null", "true", "[]"]),
)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(NUMERIC_KEYS), values, min_size=1, max_size=3))
def test_random_numeric_overrides_error_cleanly_or_run(tmp_path_factory, choice):
    """Either one ConfigError line (from the precheck or the run's build) or a run that
    finishes (completed, or failed with a one-line reason such as a diverging loss)."""
    from runner.errors import ConfigError
    from runner.overrides import precheck

    base = {
        "trainer.max_steps": 3,
        "trainer.batch_size": 64,
        "trainer.eval_every": 3,
        "model.hidden": 16,
        "trainer.progress": "false",
    }
    # keep the runs small: cap sizes the property does not need large
    over = {**base, **choice}
    for k, cap in (
        ("trainer.max_steps", 4),
        ("model.hidden", 64),
        ("model.depth", 3),
        ("trainer.accum_steps", 3),
    ):
        v = over.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > cap:
            over[k] = cap
    args = [f"{k}={_fmt(v)}" for k, v in over.items()]
    try:
        precheck(args)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        return
    d = tmp_path_factory.mktemp("prop") / "run"
    try:
        s = train_run(args, d)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        assert not d.exists()  # found before anything was written
        return
    assert s["status"] in ("completed", "failed"), s
    if s["status"] == "failed":
        assert s["error"] and "\n" not in s["error"]
    assert (d / "summary.json").exists()
