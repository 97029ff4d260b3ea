"""scripts/bench_study.py as a user runs it, at tiny settings: both ways run every run of the
study, the runs agree, and the figures it reports are the sums over the runs' own summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_bench_study_quick(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_study.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    fig = json.loads((out / "bench.json").read_text())
    # --quick: 2 arms x (1 trial x 1 tune seed + 2 seeds)
    assert fig["runs"] == 6 and fig["completed"] == 6 and fig["same_result"] == 6
    for way, sub in (("study", "study/runs"), ("procs", "procs/runs")):
        sums = [json.loads(p.read_text()) for p in (out / sub).rglob("summary.json")]
        assert len(sums) == 6
        assert fig[f"{way}_train_s"] == pytest.approx(sum(s["train_seconds"] for s in sums))
        assert fig[f"{way}_run_wall_s"] == pytest.approx(sum(s["wall_seconds"] for s in sums))
    assert fig["study_wall_s"] > 0 and fig["procs_wall_s"] > 0
    md = (out / "bench.md").read_text()
    assert "| (a) tricks study, in-process workers |" in md
    assert "| (b) one tricks train process per run |" in md
    assert "Same test/acc in (a) and (b): 6/6 runs." in md and md.strip() in r.stdout
    assert (out / "study" / "study.json").is_file() and (out / "study" / "report.md").is_file()
