"""Every committed study in experiments/ re-makes its report from its study.json alone (what a
fresh clone holds: no runs/), equal to the committed report.md: the tables the READMEs quote
are what this code computes from the recorded runs, not hand edits or an older report's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent for p in (ROOT / "experiments").glob("*/*/study.json"))
# the report links docs/study.md relative to its dir inside the source tree, by name elsewhere
MORE = re.compile(r"More: .*study\.md.*$", re.M)


IDS = [str(p.relative_to(ROOT / "experiments")) for p in STUDIES]


@pytest.mark.parametrize("d", STUDIES, ids=IDS)
def test_the_committed_report_is_remade_from_study_json(tmp_path, d, monkeypatch):
    from runner.study import report
    from runner.study.protocol import report_only

    # the figures are drawn, not rendered to PNG (the copies stand in): the text is under test
    monkeypatch.setattr(report, "save_figure", lambda fig, path: report.pyplot().close(fig))

    if not (d / "report.md").is_file():
        pytest.skip(f"{d} holds no report.md")
    out = tmp_path / d.name
    shutil.copytree(d, out, ignore=shutil.ignore_patterns("runs", "report.html"))
    report_only(out)
    made = (out / "report.md").read_text()
    assert MORE.sub("More: docs/study.md", made) == MORE.sub(
        "More: docs/study.md", (d / "report.md").read_text()
    ), f"{d.relative_to(ROOT)}/report.md is not what --report-only makes of its study.json"
    if (d / "analysis.md").is_file():
        assert (out / "analysis.md").read_text() == (d / "analysis.md").read_text()


def test_there_are_committed_studies():
    assert len(STUDIES) >= 10
