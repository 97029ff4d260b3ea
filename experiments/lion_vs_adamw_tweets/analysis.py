"""This recipe's analysis for `tricks study`: the same as ../lion_vs_adamw/analysis.py
(the sensitivity, chosen-lr and optimizer-state tables), loaded from there so the two recipes'
reports cannot drift apart.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "lion_vs_adamw_analysis",
    Path(__file__).resolve().parent.parent / "lion_vs_adamw" / "analysis.py",
)
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)


def analyse(study: dict, study_dir: Path) -> str:
    return _mod.analyse(study, study_dir)
