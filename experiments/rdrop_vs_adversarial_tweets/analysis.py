"""This recipe's analysis for `tricks study`: the same as ../rdrop_vs_adversarial/analysis.py
(the cost table), loaded from there so the two recipes' reports cannot drift apart.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`.
"""

from __future__ import annotations

from runner.study.analysis_kit import sibling_analysis

analyse = sibling_analysis(__file__, "rdrop_vs_adversarial").analyse
