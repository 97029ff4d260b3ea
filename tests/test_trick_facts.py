"""Every trick declares its own facts (runner.hooks: figures, noop, noop_exact, passes), and what
reads them (tricks list, the README's table) agrees with the classes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runner.config import TRICK_GROUPS, trick_target

from conftest import ROOT, conf_options

CASES = [(g, o) for g in TRICK_GROUPS for o in conf_options(g) if trick_target(g, o)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_trick_declares_its_facts(group, option):
    from runner.facts import trick_class
    from runner.hooks import missing_facts

    cls = trick_class(group, option)
    missing = missing_facts(cls)
    assert not missing, f"{group}={option} ({cls.__module__}.{cls.__name__}) lacks: {missing}"


def test_a_trick_without_facts_is_named_with_what_it_lacks():
    from runner.hooks import Trick, facts, missing_facts

    class Half(Trick):
        figures = ("train/x",)
        noop = {"w": 0.0}

    assert missing_facts(Half) == ["noop_exact", "passes"]
    with pytest.raises(
        TypeError,
        match=r"Half does not declare the trick facts: noop_exact, "
        r"passes",
    ):
        facts(Half)

    class Wrong(Trick):
        figures = "train/x"  # not a tuple
        noop = None
        noop_exact = True  # a no-op that does not exist cannot be exact
        passes = "1"

    assert missing_facts(Wrong) == [
        "figures (a tuple of metric keys)",
        "noop_exact (None when noop is None)",
    ]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_static_reading_equals_the_class(group, option):
    """`tricks list` reads the facts from the source (no torch import): the same values."""
    from runner.facts import STATIC, static_facts, trick_class

    cls = trick_class(group, option)
    assert static_facts(trick_target(group, option)) == {k: getattr(cls, k) for k in STATIC}


def test_list_shows_passes_and_order(tmp_path):
    from conftest import cli

    r = cli(["list", "reg"], tmp_path, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if " fgm " in l)
    assert "[2 passes, order 70]" in line and "FGM adversarial training" in line


def test_readme_trick_table_is_generated_from_the_facts():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "trick_table.py"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "trick_table", ROOT / "scripts" / "trick_table.py"
    )
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    stale = tt.with_table((ROOT / "README.md").read_text(), "| stale |")
    assert tt.BEGIN + "\n| stale |\n" + tt.END in stale
    assert len(tt.rows()) == len(CASES)
