"""Every config file of every group composes and instantiates (new files are tested by existing)."""

from __future__ import annotations

import pytest

from runner.config import groups
from runner.config import option_override as _override

from conftest import CONF, FAST, conf_options, train_run

GROUPS = groups(CONF)
# groups whose options need heavy assets are still composed, and built in their own test files
HEAVY = {
    ("model", "minilm"),
    ("model", "hf"),
    ("dataset", "hf"),
    ("dataset", "csv"),
    ("dataset", "tweets"),
    ("model", "transformer"),
}
# options that need a partner to train: multi-label losses need multi-hot labels and back
MULTI_LOSSES = ("multilabel_ce", "bce")
MULTI_DATA = ("mnist1d_multi",)
PARTNER = {
    **{("loss", o): ["dataset=mnist1d_multi"] for o in MULTI_LOSSES},
    **{("dataset", o): ["loss=multilabel_ce"] for o in MULTI_DATA},
}


CASES = [(g, o) for g in GROUPS for o in conf_options(g)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_has_help(group, option):
    from runner.config import compose, describe, validate

    cfg = compose([_override(group, option), *PARTNER.get((group, option), [])])
    validate(cfg)
    assert describe(group, option), f"conf/{group}/{option}.yaml needs a '# description' line"


@pytest.mark.parametrize(
    "group,option",
    [c for c in CASES if c not in HEAVY and c[0] not in ("logger",)],
    ids=lambda c: str(c),
)
def test_option_instantiates_and_trains(group, option, tmp_path):
    summary = train_run(
        [_override(group, option), *PARTNER.get((group, option), []), *FAST], tmp_path / "run"
    )
    assert summary["status"] == "completed", summary.get("error")
    assert summary["steps"] == 6


def test_defaults_are_the_documented_ones():
    from runner.config import compose

    cfg = compose([])
    assert cfg.model._target_.endswith("MLP")
    assert cfg.dataset._target_.endswith("mnist1d.build")
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert not cfg.get("reg")
    for key in (
        "epochs",
        "max_steps",
        "batch_size",
        "accum_steps",
        "eval_every",
        "checkpoint_every",
        "device",
        "precision",
        "compile",
        "deterministic",
    ):
        assert key in cfg.trainer


def test_every_loss_option_is_covered():
    """The loss group is enumerated like every group; its multi-label options train paired."""
    assert {"ce", "multilabel_ce", "bce"} <= set(conf_options("loss"))
    for o in conf_options("loss"):
        assert ("loss", o) in CASES
        assert o == "ce" or ("loss", o) in PARTNER, f"loss={o}: add it to MULTI_LOSSES"
