"""The regularizers in real runs on mnist1d (in-process, a few steps each).

- every trick and every pair of tricks (parametrized over conf/reg/, so a new trick file is
  covered by adding it) trains with a finite loss and logs its figure;
- no-op settings reproduce the baseline run (exactly, or to float tolerance where the computation
  path differs, e.g. R-Drop's doubled batch);
- R-Drop + FGM + flooding + clipping compose under gradient accumulation and bf16 autocast;
- ChildTuning-D's mask is saved in checkpoints, restored on resume, and freezes what it masks.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from runner.config import LIST_GROUPS, TRICK_GROUPS, option_override
from runner.facts import trick_class

from conftest import CONF, FAST, conf_options, read_rows, strip_timing, train_run

REG = conf_options("reg")
STEPS = 3
BASE = [o for o in FAST if not o.startswith(("trainer.max_steps", "trainer.eval_every"))] + [
    f"trainer.max_steps={STEPS}",
    f"trainer.eval_every={STEPS}",
    "model=mlp",
]
DROP = BASE + ["model.dropout=0.1"]
# SGD for the no-op comparisons: Adam's first steps are ~lr·sign(g), so float-level differences
# in near-zero gradient entries (R-Drop's doubled batch) would become lr-sized.
NOOP_BASE = BASE + ["optimizer=sgd", "model.dropout=0"]


def figures(name: str) -> tuple:
    """The metric keys the trick declares it logs (runner.hooks: the trick facts)."""
    return trick_class("reg", name).figures


PAIRS = list(itertools.combinations(REG, 2))


def finite_losses(rows) -> list:
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses, rows
    return [l for l in losses if not math.isfinite(l)]


def check_run(summary, run_dir, combo):
    assert summary["status"] == "completed", summary.get("error")
    assert summary["steps"] == STEPS
    rows = read_rows(run_dir)
    assert finite_losses(rows) == []
    assert math.isfinite(rows[-1]["val/loss"])
    for name in combo:
        for key in figures(name):
            assert any(key in r for r in rows), (name, key, rows[-1])


@pytest.mark.parametrize("name", REG)
def test_every_trick_trains_with_finite_loss(name, tmp_path):
    check_run(train_run(DROP + [f"reg=[{name}]"], tmp_path / "run"), tmp_path / "run", [name])


# forms of a trick other than its defaults, each run alone like the options above
FORMS = [
    ("fgm", ["reg.fgm.mode=adv"]),
    ("pgd", ["reg.pgd.mode=adv", "reg.pgd.adv_weight=0.5"]),
    ("fgm", ["reg.fgm.adv_weight=0.5"]),
]


@pytest.mark.parametrize("name,extra", FORMS, ids=[" ".join(f[1]) for f in FORMS])
def test_every_form_trains_with_finite_loss(name, extra, tmp_path):
    check_run(
        train_run(DROP + [f"reg=[{name}]", *extra], tmp_path / "run"), tmp_path / "run", [name]
    )


@pytest.fixture(scope="module")
def drop_cfg():
    from runner.config import compose

    return compose(DROP)


def with_reg(cfg, names):
    """`cfg` with reg=[names...], merged from conf/reg/ as Hydra does (without composing again:
    Hydra's compose is most of a 4-step run's time)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.reg = OmegaConf.merge(*[OmegaConf.load(CONF / "reg" / f"{n}.yaml") for n in names])
    return cfg


def test_with_reg_equals_hydra_composition(drop_cfg):
    from runner.config import compose

    assert with_reg(drop_cfg, ["rdrop", "flooding"]) == compose(DROP + ["reg=[rdrop,flooding]"])


@pytest.mark.parametrize("combo", PAIRS, ids="+".join)
def test_every_pair_trains_with_finite_loss(combo, drop_cfg, tmp_path):
    from runner.main import run

    check_run(run(with_reg(drop_cfg, combo), tmp_path / "run"), tmp_path / "run", combo)


@pytest.mark.parametrize(
    "extra", [[], ["trainer.accum_steps=2", "trainer.precision=bf16"]], ids=["plain", "accum2-bf16"]
)
def test_all_tricks_at_once(extra, tmp_path):
    s = train_run(DROP + [f"reg=[{','.join(REG)}]", "clip=norm", *extra], tmp_path / "run")
    assert s["status"] == "completed", s.get("error")
    assert finite_losses(read_rows(tmp_path / "run")) == []


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    d = tmp_path_factory.mktemp("baseline") / "run"
    assert train_run(NOOP_BASE, d)["status"] == "completed"
    return strip_timing(read_rows(d))


def same_rows(base, rows, exact: bool):
    assert len(base) == len(rows)
    for b, r in zip(base, rows):
        for k, v in b.items():
            if exact:
                assert r[k] == v, (k, r[k], v)
            else:
                assert r[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (k, r[k], v)


def noop_cases() -> list:
    """(id, overrides, exact) for every trick option that declares a no-op setting (`noop`)."""
    cases = []
    for group in TRICK_GROUPS:
        for name in conf_options(group):
            cls = trick_class(group, name)
            if cls is None or cls.noop is None:
                continue
            key = f"{group}.{name}" if group in LIST_GROUPS else group
            over = [option_override(group, name)]
            over += [f"{key}.{k}={v!r}" for k, v in cls.noop.items()]
            cases.append((name if group == "reg" else f"{group}={name}", over, cls.noop_exact))
    return cases


NOOPS = noop_cases()


@pytest.mark.parametrize("name,overrides,exact", NOOPS, ids=[n[0] for n in NOOPS])
def test_noop_setting_reproduces_the_baseline(name, overrides, exact, baseline, tmp_path):
    s = train_run(NOOP_BASE + overrides, tmp_path / "run")
    assert s["status"] == "completed", s.get("error")
    same_rows(baseline, strip_timing(read_rows(tmp_path / "run")), exact)


def test_rdrop_fgm_flooding_clip_compose_with_accumulation_and_bf16(tmp_path):
    from runner import build
    from runner.config import compose

    ov = DROP + [
        "reg=[rdrop,fgm,flooding]",
        "clip=norm",
        "trainer.accum_steps=2",
        "trainer.precision=bf16",
    ]
    # the documented order: flooding (outermost loss) > R-Drop > FGM (backward) > clipping
    tricks = build.tricks(compose(ov))
    assert [t.name for t in tricks][:3] == ["flooding", "rdrop", "fgm"] and len(tricks) == 4
    s = train_run(ov, tmp_path / "run")
    assert s["status"] == "completed", s.get("error")
    rows = read_rows(tmp_path / "run")
    assert finite_losses(rows) == []
    for key in ("train/rdrop_kl", "train/adv_loss", "train/flood_active_frac", "train/clip_factor"):
        assert any(key in r for r in rows), key


def test_childtuning_d_mask_is_checkpointed_restored_and_freezes_weights(tmp_path, monkeypatch):
    from runner.models.mlp import MLP
    from runner.tricks import childtuning_d

    run_dir = tmp_path / "run"
    ov = DROP + ["reg=[childtuning_d]", "reg.childtuning_d.fisher_batches=4"]
    assert train_run(ov, run_dir)["status"] == "completed"
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    mask = ckpt["tricks"]["0:childtuning_d"]["mask"]
    n = sum(m.numel() for m in mask)
    assert sum(int(m.sum()) for m in mask) == round(0.3 * n)

    # masked-out entries never move (AdamW, no weight decay: zero gradient, zero update)
    torch.manual_seed(0)
    init = MLP(in_dim=40, num_classes=10, hidden=100, depth=2, dropout=0.1).state_dict()
    names = list(init)
    for name, m in zip(names, mask):
        w0, w = init[name], ckpt["model"][name]
        assert torch.equal(w[~m], w0[~m]), name
    assert any(not torch.equal(ckpt["model"][k][m], init[k][m]) for k, m in zip(names, mask))

    # resume: setup would compute a different mask; the checkpoint's must win
    monkeypatch.setattr(
        childtuning_d,
        "fisher_diag",
        lambda state, batches, params, train: [torch.rand_like(p) for p in params],
    )
    s = train_run(ov + ["resume=true", f"trainer.max_steps={STEPS + 2}"], run_dir)
    assert s["status"] == "completed", s.get("error")
    assert s["steps"] == STEPS + 2
    again = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(again["tricks"]["0:childtuning_d"]["mask"], mask))


def resumes_exactly(ov, tmp_path, monkeypatch, kill_at: int):
    """Train `ov` uninterrupted (tmp_path/want) and stopped by SIGTERM after step `kill_at`, then
    resumed (tmp_path/got); assert both end with the same rows. Returns (want, got)."""
    want = tmp_path / "want"
    assert train_run(ov, want)["status"] == "completed"
    got = tmp_path / "got"
    monkeypatch.setenv("TRICKS_TEST_KILL_AT_STEP", f"{kill_at}:TERM")
    s = train_run(ov, got)
    assert s["status"] == "interrupted" and s["steps"] == kill_at, s
    monkeypatch.delenv("TRICKS_TEST_KILL_AT_STEP")
    s = train_run(ov + ["resume=true"], got)
    assert s["status"] == "completed" and s["resumed"] is True
    assert strip_timing(read_rows(got)) == strip_timing(read_rows(want))
    return want, got


def test_stateful_tricks_resume_exactly(tmp_path, monkeypatch):
    """Spectral's power-iteration vectors, ChildTuning-D's mask and the random draws of
    ChildTuning-F, input noise and R-Drop's dropout all come back on resume: a run stopped by
    SIGTERM after step 5 and resumed ends with the same rows as an uninterrupted one."""
    ov = [o for o in DROP if not o.startswith(("trainer.max_steps", "trainer.eval_every"))] + [
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "trainer.checkpoint_every=2",
        "reg=[spectral,childtuning_f,childtuning_d,noise,rdrop]",
        "reg.childtuning_d.fisher_batches=2",
    ]
    resumes_exactly(ov, tmp_path, monkeypatch, kill_at=5)
