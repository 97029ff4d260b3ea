"""This recipe's analysis for `tricks study`: the same as ../lion_vs_adamw/analysis.py
(the sensitivity, chosen-lr and optimizer-state tables), loaded from there so the two recipes'
reports cannot drift apart.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`.
"""

from __future__ import annotations

from runner.study.analysis_kit import sibling_analysis

analyse = sibling_analysis(__file__, "lion_vs_adamw").analyse
