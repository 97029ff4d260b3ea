"""`tricks compare`'s outputs for people: the verdict in W&B (one "verdict" run of the sweep's
project and group, read back from the offline run), and report.html rendered in a real browser
at 1280 px (no horizontal overflow, sortable columns, plots with hover text)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import compare
from tests.test_compare import SGD, make_run

WANDB = {"logger._target_": "runner.log.wandb.WandbSink", "logger.project": "myproj",
         "logger.group": "sweep-7"}


def _sweep(root: Path) -> Path:
    for s, v in enumerate([0.80, 0.82, 0.81]):
        make_run(root, f"a{s}", v, seed=s, config_extra=WANDB)
    for s, v in enumerate([0.70, 0.75, 0.72]):
        make_run(root, f"b{s}", v, seed=s, optimizer=SGD, config_extra=WANDB)
    return root


def _records(local: Path) -> list[dict]:
    f = next(Path(local).glob("run-*.wandb"))
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def test_compare_wandb_logs_one_verdict_run_with_table_plots_headline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "rep"
    assert compare.main([str(_sweep(tmp_path / "sweep"))], out=str(out), wandb=True) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    recs = _records(runs[0])
    info = next(r["run"] for r in recs if r["type"] == "run")
    assert info["project"] == "myproj" and info["run_group"] == "sweep-7"
    assert info["job_type"] == "verdict" and info["display_name"] == "verdict test/acc"
    summary = {}
    for r in recs:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    assert summary["headline"].startswith("6 completed run(s) in 2 group(s)")
    item = next(r["history"]["item"] for r in recs if r["type"] == "history")
    assert item["verdict._type"] == "table-file"  # the record holds the wandb.Table's file
    assert {k for k in item if k.startswith("plots/") and k.endswith("._type")} == {
        f"plots/{n}._type" for n in ("final", "curves", "train_loss")}
    assert all(item[f"plots/{n}._type"] == "image-file" for n in ("final", "curves"))
    table = json.loads((runs[0] / "files" / item["verdict.path"]).read_text())
    assert table["columns"][:3] == ["#", "group", "n"]
    assert [row[1] for row in table["data"]] == ["optimizer=adamw (baseline)", "optimizer=sgd"]
    assert table["data"][1][7] == "worse"
