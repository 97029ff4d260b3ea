"""This recipe's analysis for `tricks study`: the same as ../rdrop_vs_adversarial/analysis.py
(the cost table), loaded from there so the two recipes' reports cannot drift apart.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "rdrop_vs_adversarial_analysis",
    Path(__file__).resolve().parent.parent / "rdrop_vs_adversarial" / "analysis.py",
)
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)


def analyse(study: dict, study_dir: Path) -> str:
    return _mod.analyse(study, study_dir)
