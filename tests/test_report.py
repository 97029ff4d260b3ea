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
from tests.conftest import SGD, make_run

WANDB = {
    "logger._target_": "runner.log.wandb.WandbSink",
    "logger.project": "myproj",
    "logger.group": "sweep-7",
}


def _sweep(root: Path) -> Path:
    for s, v in enumerate([0.80, 0.82, 0.81]):
        make_run(root, f"a{s}", v, seed=s, config_extra=WANDB)
    for s, v in enumerate([0.70, 0.75, 0.72]):
        make_run(root, f"b{s}", v, seed=s, optimizer=SGD, config_extra=WANDB)
    return root


def _records(local: Path) -> list[dict]:
    f = next(Path(local).glob("run-*.wandb"))
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
        f"plots/{n}._type" for n in ("final", "curves", "train_loss")
    }
    assert all(item[f"plots/{n}._type"] == "image-file" for n in ("final", "curves"))
    table = json.loads((runs[0] / "files" / item["verdict.path"]).read_text())
    assert table["columns"][:3] == ["#", "group", "n"]
    assert [row[1] for row in table["data"]] == ["optimizer=adamw (baseline)", "optimizer=sgd"]
    assert table["data"][1][7] == "worse"


# -- report.html in a real browser ---------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _render(
    page: Path, tmp: Path, *extra: str, size: str = "1280,900"
) -> subprocess.CompletedProcess:
    exe = _chromium()
    if exe is None:
        print(
            "chromium is not installed (apt-get install chromium; .ci/run does it): "
            "report.html is not rendered"
        )
        pytest.skip("chromium is not installed: report.html is not rendered")
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chr'}",
            f"--window-size={size}",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


# After load: the page's width, then a click on the mean's header and on it again: the first
# row's group each time (ascending, then descending).
PROBE = """<script>window.addEventListener('load',function(){
var d=document.documentElement,th=document.querySelectorAll('#summary th')[3],out={};
out.scrollWidth=d.scrollWidth;out.boxes=[];
document.querySelectorAll('.box').forEach(function(b){out.boxes.push(b.getBoundingClientRect().right)});
function first(){return document.querySelector('#summary tbody tr').cells[1].textContent}
th.click();out.asc=first();th.click();out.desc=first();
var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(out);
document.body.appendChild(p)});</script>"""


def _wide_sweep(root: Path) -> Path:
    """A report at its widest: long group labels (several differing keys), a long path."""
    d = root / ("a-rather-long-directory-name-" * 3) / "multirun" / "2026-12-01" / "22-00-00"
    regs = [
        None,
        {"rdrop": {"alpha": 4.0}},
        {"fgm": {"eps": 1.0}},
        {"rdrop": {"alpha": 4.0}, "fgm": {"eps": 1.0}, "flooding": {"b": 0.05}},
    ]
    i = 0
    for g, reg in enumerate(regs):
        for s in range(3):
            make_run(
                d,
                str(i),
                0.8 + 0.01 * g + 0.005 * s,
                seed=s,
                reg=reg,
                config_extra={
                    "model.dropout": 0.1 * g,
                    "optimizer.weight_decay": 0.01 * g,
                    "trainer.batch_size": 32 * (g + 1),
                },
            )
            i += 1
    make_run(d, str(i), None, seed=9, status="failed")
    return d


def test_report_html_fits_1280px_sorts_and_hovers(tmp_path):
    out = tmp_path / "rep"
    assert compare.main([str(_wide_sweep(tmp_path))], out=str(out)) == 0
    page = (out / "report.html").read_text()
    assert "<script src" not in page and "http" not in page.split("<body>")[1]  # offline
    titles = re.findall(r"<title>([^<]*)</title>", page.split("</head>")[1])
    assert any(re.search(r"\nn=3 · mean 0\.8\d+ ± [0-9.]+ \[", t) for t in titles), titles[:5]
    assert any(re.search(r"step 6 · n=3 · mean [0-9.]+ ± ", t) for t in titles)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    r = _render(probe, tmp_path, "--virtual-time-budget=5000", "--dump-dom")
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout)
    assert m, r.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["scrollWidth"] <= 1280, got  # no horizontal overflow of the page
    assert all(right <= 1280 for right in got["boxes"]), got  # tables scroll inside their box
    assert got["asc"].startswith("reg=none ") and got["asc"].endswith("(baseline)")
    assert got["desc"].startswith("reg=[fgm,flooding,rdrop] ")
    shot = tmp_path / "report_1280.png"
    r = _render(out / "report.html", tmp_path, "--hide-scrollbars", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", r.stderr[-2000:]
    import struct

    assert struct.unpack(">II", shot.read_bytes()[16:24]) == (1280, 900)


# After load: the page's width and where each verdict line is (ul.verdicts li).
VERDICT_PROBE = """<script>window.addEventListener('load',function(){
var out={scrollWidth:document.documentElement.scrollWidth,lines:[]};
document.querySelectorAll('ul.verdicts li').forEach(function(li){var r=li.getBoundingClientRect();
out.lines.push({text:li.textContent,bottom:r.bottom,right:r.right})});
var p=document.createElement('pre');p.id='probe';p.textContent=JSON.stringify(out);
document.body.appendChild(p)});</script>"""


def _verdicts_on_first_screen(page: str, tmp: Path, arms: int) -> list[dict]:
    """Each arm's verdict line lies inside the first 1280 x 800 screen, no sideways scroll."""
    probe = tmp / "verdict_probe.html"
    probe.write_text(page.replace("</body>", VERDICT_PROBE + "</body>"))
    r = _render(probe, tmp, "--virtual-time-budget=5000", "--dump-dom", size="1280,800")
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout)
    assert m, r.stderr[-2000:]
    got = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert got["scrollWidth"] <= 1280, got
    assert len(got["lines"]) == arms, got
    for line in got["lines"]:
        assert line["bottom"] <= 800 and line["right"] <= 1280, line
    return got["lines"]


def test_every_verdict_is_on_the_first_screen_of_both_reports(tmp_path):
    """compare's report at its widest (long labels, 15 columns) and the study's: a verdict line
    per arm above the tables, all within the first screen at 1280 x 800; the study's plots are
    the same interactive SVG as compare's, trials numbered as in its table."""
    out = tmp_path / "rep"
    assert compare.main([str(_wide_sweep(tmp_path))], out=str(out)) == 0
    lines = _verdicts_on_first_screen((out / "report.html").read_text(), tmp_path, 3)
    assert all(
        re.search(r": (better|worse|no significant difference|no spread)", x["text"]) for x in lines
    ), lines

    from runner.study.report import write_report
    from tests.test_study_report import study_of

    sdir = tmp_path / "study"
    sdir.mkdir()
    write_report(study_of(sdir), sdir)
    page = (sdir / "report.html").read_text()
    lines = _verdicts_on_first_screen(page, tmp_path, 2)
    assert any("fgm is better than none" in x["text"] for x in lines), lines
    assert page.count('<svg class="plot"') == 3 and "data:image/png" not in page
    trials = re.findall(r"trial \(as in the tuning table\) (\d+) ·", page)
    assert trials and min(map(int, trials)) == 0  # the table's numbering, from 0


# -- W&B Sweeps: a sweep file from a -m command line --------------------------------------------


def test_wandb_sweep_file_runs_the_same_jobs_as_the_multirun(tmp_path):
    import itertools

    import yaml
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    from runner.config import compose
    from runner.overrides import precheck
    from tests.conftest import FAST

    args = [
        "optimizer=adamw,lion",
        "seed=0,1",
        "reg=[rdrop],[fgm,rdrop]",
        "hydra/launcher=joblib",
        *FAST,
    ]
    r = subprocess.run(
        [sys.executable, "-m", "runner.log.wandb_sweep", "--project", "p1", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(compare.__file__).parents[1])},
    )
    assert r.returncode == 0, r.stderr
    assert "hydra/launcher=joblib dropped" in r.stderr
    sweep = yaml.safe_load(r.stdout)
    assert sweep["method"] == "grid" and sweep["project"] == "p1"
    assert sweep["parameters"] == {
        "optimizer": {"values": ["adamw", "lion"]},
        "seed": {"values": [0, 1]},
        "reg": {"values": ["[rdrop]", "[fgm,rdrop]"]},
    }
    cmd = sweep["command"]
    assert cmd[:5] == ["${env}", "tricks", "train", "logger=wandb", "logger.project=p1"]
    assert cmd[-1] == "${args_no_hyphens}" and cmd[5:-1] == FAST
    # what `wandb agent` runs for each point: W&B's own formatting of the arguments
    names = list(sweep["parameters"])
    points = list(itertools.product(*(sweep["parameters"][n]["values"] for n in names)))
    assert len(points) == 8
    for point in points:
        agent = create_sweep_command_args(
            {"args": {n: {"value": v} for n, v in zip(names, point)}}
        )["args_no_hyphens"]
        overrides = [*cmd[3:-1], *agent]
        precheck(overrides)
        cfg = compose(overrides)
        assert cfg.seed == point[1] and sorted(cfg.reg) == sorted(point[2].strip("[]").split(","))
    # an interval becomes a distribution, and grid refuses it
    r = subprocess.run(
        [sys.executable, "-m", "runner.log.wandb_sweep", "optimizer.lr=interval(0.001,0.01)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(compare.__file__).parents[1])},
    )
    assert r.returncode == 0, r.stderr
    s = yaml.safe_load(r.stdout)
    assert s["method"] == "random"
    assert s["parameters"]["optimizer.lr"] == {"distribution": "uniform", "min": 0.001, "max": 0.01}
