"""Side-by-side performance benchmark of the `tricks` engine, in one process, reported as ratios.

    python scripts/bench.py                     # everything (~20 min on 2 CPU cores)
    python scripts/bench.py --quick             # tiny settings: checks the script in ~3 min
    python scripts/bench.py --sections overhead,peers --reps 5 --out /tmp/bench.md

Sections (each arm is measured `--reps` times, the arms interleaved A B C A B C ... with the order
rotated every repetition; figures are medians, ratios are medians of per-repetition ratios, so a
drifting machine speed cancels out):

- overhead: the engine (`runner.main.run`, exactly what `tricks train` runs) against a minimal
  hand-written PyTorch loop (scripts/hand_loop.py) with the same model, data, batch, optimizer
  (fused AdamW), schedule, steps and seed; steady-state samples/s (the first log interval, with
  warm-up, is dropped) and, apart, the in-process time to the first finished step. Each arm
  also splits its steady step (scripts/hand_loop.ModelClock) into the time inside the model's
  forward, the backward and the optimizer's update kernel, which is the same work in every arm,
  and the rest: the framework's own work per step, where the arms differ. On jobs where the
  model's compute is nearly the whole step, that split resolves differences far below the
  machine's noise on whole steps.
- peers: the same jobs through Hugging Face `Trainer` and PyTorch Lightning
  (scripts/bench_peers.py).
- startup: a fresh process per framework, time from spawn to the end of the first step.
- tricks: steady step time and peak step memory of every conf/reg trick, clip mode and derived
  optimizer relative to no trick, next to the theoretical count of forward+backward passes.
- optim: step time and optimizer-state memory of every conf/optimizer entry, relative to AdamW.
- scaling: engine and hand-loop throughput against batch size and model width.
- compile: trainer.compile=true against false: warm-up and steady throughput.
- precision: trainer.precision=bf16 against fp32 (not in the default set; on a CPU bf16 is
  opt-in and pays only with bf16 matrix units such as AMX).
- data: trainer.data_on_device=true (splits on the device, batches are slices) against false
  (splits on the host, each batch gathered, pinned and copied non-blocking); not in the default
  set: on a CPU both are the host. scripts/gpu_check.py runs it on a GPU.

Jobs: mnist1d MLP (the default config), mnist1d CNN (model=cnn1d), tweets Transformer
(model=transformer dataset=tweets, 2,000 training tweets, minilm tokenizer, dynamic padding), and
the same with length-grouped batches (dataset.padding=bucket); `--jobs` can add `tweets MiniLM`
(the pretrained MiniLM-L6 fine-tuned on 2,000 tweets, bucketed: a GPU-sized job). Every arm
trains on the engine's batch order (scripts/hand_loop.engine_order), so text batches have the same
shapes everywhere. On a GPU every arm runs on the engine's device and precision (bf16 autocast,
TF32), and the model/framework split is not taken (kernels run asynchronously).
Peak memory on CPU is the largest total size of tensors alive during one training step, counted
by a TorchDispatchMode (scripts/bench_mem.py): the process RSS would be dominated by torch itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: the three jobs of the overhead / peers / startup sections
JOBS = {
    "mnist1d MLP": ["model=mlp"],
    "mnist1d CNN": ["model=cnn1d"],
    "tweets Transformer": [
        "model=transformer",
        "dataset=tweets",
        "dataset.train_size=2000",
        "dataset.val_size=200",
        "dataset.test_size=200",
        "trainer.batch_size=32",
        "optimizer.lr=0.001",
    ],
}
#: the same text job with length-grouped batches (dataset.padding=bucket): every arm follows the
#: engine's (bucketed) batch order, so this row shows what bucketing saves, in every framework
JOBS["tweets Transformer bucketed"] = JOBS["tweets Transformer"] + ["dataset.padding=bucket"]
#: the jobs run when --jobs is not given (the MiniLM job is sized for a GPU: --jobs adds it)
DEFAULT_JOBS = list(JOBS)
JOBS["tweets MiniLM"] = [
    "model=minilm",
    "dataset=tweets",
    "dataset.train_size=2000",
    "dataset.val_size=200",
    "dataset.test_size=200",
    "dataset.padding=bucket",
    "trainer.batch_size=32",
    "optimizer.lr=5e-5",
]
#: the model the trick and optimizer costs are measured on: big enough that the forward and
#: backward passes, not the per-step Python, dominate a step
TRICK_JOB = ["model=mlp", "model.hidden=512", "model.depth=4", "trainer.batch_size=256"]


def theory(group: str | None, option: str) -> str:
    """Forward+backward passes per step in theory (default settings): the trick's own `passes`
    fact (runner.hooks; a trick without it fails here, naming it); no trick is one pass."""
    if group is None:
        return "1"
    from runner.facts import trick_class
    from runner.hooks import facts

    return facts(trick_class(group, option))["passes"]


#: forms of a trick other than its defaults: name -> (job, overrides, passes in theory). The
#: embedding-table forms and LazyOptimizer need a text model (on the MLP lazy is a no-op).
TEXT_TRICK_JOB = JOBS["tweets Transformer"]
FORMS = {
    "fgm mode=adv": (
        TRICK_JOB,
        ["reg=[fgm]", "reg.fgm.mode=adv"],
        "2 (clean backward to the input)",
    ),
    "pgd mode=adv": (TRICK_JOB, ["reg=[pgd]", "reg.pgd.mode=adv"], "K+1"),
    "text: none": (TEXT_TRICK_JOB, [], "1"),
    "text: fgm": (TEXT_TRICK_JOB, ["reg=[fgm]"], "2"),
    "text: fgm target=table mode=adv": (
        TEXT_TRICK_JOB,
        ["reg=[fgm]", "reg.fgm.target=table", "reg.fgm.mode=adv"],
        "2 (+ table rows)",
    ),
    "text: pgd target=table": (TEXT_TRICK_JOB, ["reg=[pgd]", "reg.pgd.target=table"], "K+1"),
    "text: lazy": (TEXT_TRICK_JOB, ["derived=[lazy]"], "1 (+ copy of the tables)"),
}


def conf_options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


# -- measurement ----------------------------------------------------------------------------


class StepClock:
    """The engine's callback (engine.fit `callbacks`) that takes each step's end time (one
    perf_counter call, hand_loop.stamp), keeps the State, and with `mem` counts the peak tensor
    memory of step 3 (bench_mem.PeakTensorMemory around that one step)."""

    def __init__(self, mem: bool = False):
        self.times, self.box, self.mem, self._peak = [], {}, mem, None

    def on_step_start(self, state) -> None:
        if self.mem and state.step == 2:
            from bench_mem import PeakTensorMemory

            self._peak = PeakTensorMemory().__enter__()

    def on_step_end(self, state) -> None:
        from hand_loop import stamp

        if self._peak is not None:
            self._peak.__exit__(None, None, None)
            self.box["peak_step_bytes"], self._peak = self._peak.peak, None
        stamp(self.times)
        self.box["state"] = state


def engine_run(over: list[str], steps: int, warm: int, mem: bool = False) -> dict:
    """`tricks train` in-process (runner.main.run) with eval/checkpoint only after the last step,
    timed by a StepClock callback."""
    from runner import engine
    from runner.config import compose
    from runner.main import run

    from hand_loop import step_result

    cfg = compose(
        over
        + [
            f"trainer.max_steps={steps}",
            f"trainer.log_every={warm}",
            f"trainer.eval_every={steps}",
            "trainer.progress=false",
            "logger=jsonl",
        ]
    )
    clock = StepClock(mem)
    determinism = engine.torch_determinism()
    try:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            summary = run(cfg, Path(d) / "run", callbacks=[clock])
    finally:
        # the engine's deterministic mode is process-wide: the next arm gets torch's defaults
        engine.torch_determinism(determinism)
    if summary["status"] != "completed":
        raise RuntimeError(f"engine run failed: {summary.get('error')}")
    from runner.optim.state import state_bytes

    box = clock.box
    state = box.pop("state")
    return {
        **step_result(clock.times, cfg.trainer.batch_size, warm, t0),
        "opt_state_bytes": state_bytes(state.optimizer),
        **box,
    }


def interleave(arms: dict, reps: int, log=print) -> dict:
    """arms: name -> callable() -> dict. Returns name -> list of results (one per rep)."""
    names = list(arms)
    res = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            t = time.perf_counter()
            res[n].append(arms[n]())
            log(
                f"  rep {r + 1}/{reps} {n}: "
                + ", ".join(
                    f"{k}={v:.4g}" for k, v in res[n][-1].items() if isinstance(v, (int, float))
                )
                + f" ({time.perf_counter() - t:.1f} s)"
            )
    return res


def job_steps(args, over: list[str]) -> tuple[int, int]:
    """(steps, warm-up steps) of a job's measured runs: the tweets jobs have their own."""
    return (
        (args.text_steps, args.text_warm) if "dataset=tweets" in over else (args.steps, args.warm)
    )


def clocked(fn, over: list[str], steps: int, warm: int) -> dict:
    """fn(over, steps, warm) under a ModelClock: adds model_ms and framework_ms per step. Not
    on CUDA, where kernels run asynchronously: the clock would time their launches, and
    synchronizing to time them would change the arms."""
    import torch

    from hand_loop import ModelClock

    if torch.cuda.is_available():
        return fn(over, steps, warm)
    with ModelClock() as clock:
        r = fn(over, steps, warm)
    return {**r, **clock.split(r["times"], warm)}


def paired_diff(a: list, b: list, key: str) -> dict:
    """Mean and 95% CI (t) of b[i][key] - a[i][key] over the repetitions (paired: rep i of
    both arms ran back to back)."""
    from runner.stats import describe

    return describe([y[key] - x[key] for x, y in zip(a, b)])


def med(results: list, key: str) -> float:
    vals = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def ratio(a: list, b: list, key: str) -> float:
    """Median over repetitions of a[i][key] / b[i][key]."""
    return statistics.median(x[key] / y[key] for x, y in zip(a, b))


# -- sections ---------------------------------------------------------------------------------


def section_overhead(args, out: dict, with_peers: bool):
    from hand_loop import hand_run

    rows = []
    for job, over in JOBS.items():
        if job not in args.jobs:
            continue
        print(f"[overhead{'+peers' if with_peers else ''}] {job}", flush=True)
        n, w = job_steps(args, over)
        arms = {
            "engine": lambda: clocked(engine_run, over, n, w),
            "hand": lambda: clocked(hand_run, over, n, w),
        }
        if with_peers:
            from bench_peers import hf_run, lightning_run

            arms["hf"] = lambda: clocked(hf_run, over, n, w)
            arms["lightning"] = lambda: clocked(lightning_run, over, n, w)
        res = interleave(arms, args.reps)
        row = {
            "job": job,
            "hand_sps": med(res["hand"], "sps"),
            "engine_sps": med(res["engine"], "sps"),
            "engine_vs_hand": ratio(res["engine"], res["hand"], "sps"),
            "engine_first_step_s": med(res["engine"], "first_step_s"),
            "hand_first_step_s": med(res["hand"], "first_step_s"),
        }
        if all("framework_ms" in r for v in res.values() for r in v):  # (no split on CUDA)
            for a in res:
                row[f"{a}_model_ms"] = med(res[a], "model_ms")
                row[f"{a}_framework_ms"] = med(res[a], "framework_ms")
                if a != "engine":
                    # the engine's per-step saving over a: a's framework time minus the engine's
                    d = paired_diff(res["engine"], res[a], "framework_ms")
                    row[f"saved_vs_{a}_ms"], row[f"saved_vs_{a}_ci"] = d["mean"], d["ci95"]
                    row[f"saved_vs_{a}_pct"] = 100 * d["mean"] / med(res["engine"], "step_ms")
        for p in ("hf", "lightning"):
            if p in res:
                row[f"{p}_sps"] = med(res[p], "sps")
                row[f"engine_vs_{p}"] = ratio(res["engine"], res[p], "sps")
                row[f"{p}_first_step_s"] = med(res[p], "first_step_s")
        rows.append(row)
    out["overhead"] = rows


def section_startup(args, out: dict):
    """A fresh interpreter per framework: spawn -> end of the first step (imports included)."""
    rows = []
    for job in [j.strip() for j in args.startup_jobs.split(",")]:
        print(f"[startup] {job}", flush=True)
        fws = ["tricks", "hand", "hf", "lightning"]
        res = {f: [] for f in fws}
        for r in range(args.startup_reps):
            for f in fws[r % 4 :] + fws[: r % 4]:
                res[f].append(first_step_subprocess(f, job))
                print(f"  rep {r + 1} {f}: {res[f][-1]:.2f} s", flush=True)
        rows.append({"job": job, **{f: statistics.median(v) for f, v in res.items()}})
    out["startup"] = rows


def first_step_subprocess(framework: str, job: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", framework, "--child-job", job],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
        timeout=600,
    )
    for line in p.stdout.splitlines():
        if line.startswith("FIRST_STEP_END "):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"{framework} child failed: {p.stderr[-2000:]}")


def child(framework: str, job: str):
    """Run `job` for 2 steps the way a user of `framework` would, printing the wall-clock time
    at the end of the first step. tricks: the real CLI entry (`tricks train ...`)."""
    over = JOBS[job] + ["trainer.max_steps=2"]
    if os.environ.get("BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if framework == "tricks":
        from runner import main as entry

        class FirstStep:  # engine.fit callback: the end of the first step
            def on_step_end(self, state):
                if not getattr(self, "done", False):
                    self.done = True
                    print(f"FIRST_STEP_END {time.time()}", flush=True)

        entry.CALLBACKS.append(FirstStep())
        from runner.cli import main

        d = tempfile.mkdtemp()
        sys.argv = ["tricks", "train", *over, "trainer.progress=false", f"hydra.run.dir={d}/run"]
        try:
            main()
        except SystemExit:
            pass
        return
    if framework == "hand":
        from hand_loop import hand_run as fn
    else:
        from bench_peers import hf_run, lightning_run

        fn = hf_run if framework == "hf" else lightning_run
    fn(over, 2, 1, on_first_step=lambda: print(f"FIRST_STEP_END {time.time()}", flush=True))


def section_tricks(args, out: dict):
    cases = {"none": []}
    groups = {"none": (None, "none")}  # arm -> (group, option), for its theoretical passes
    for r in conf_options("reg"):
        cases[r], groups[r] = [f"reg=[{r}]"], ("reg", r)
    for c in conf_options("clip"):
        if c != "none":
            cases[f"clip={c}"], groups[f"clip={c}"] = [f"clip={c}"], ("clip", c)
    for d in conf_options("derived"):
        cases[d], groups[d] = [f"derived=[{d}]"], ("derived", d)
    cases = {k: TRICK_JOB + v for k, v in cases.items()}
    cases.update({k: job + v for k, (job, v, _) in FORMS.items()})
    if args.quick:
        cases = {k: v for k, v in cases.items() if k in ("none", "rdrop", "fgm", "clip=norm")}
    if args.only:  # some arms, each with its own job's baseline
        keep = {a.strip() for a in args.only.split(",")} | {"none"}
        keep |= {"text: none"} if any(a.startswith("text: ") for a in keep) else set()
        unknown = sorted(keep - set(cases))
        if unknown:
            raise SystemExit(
                f"error: --only: unknown arm {unknown[0]!r} (allowed: {', '.join(cases)})"
            )
        cases = {k: v for k, v in cases.items() if k in keep}
    print(
        f"[tricks] {len(cases)} arms on {' '.join(TRICK_JOB)} (text: on the tweets Transformer)",
        flush=True,
    )

    def length(k: str) -> tuple[int, int]:  # (steps, warm-up): the text job's own, when set
        if k.startswith("text: ") and args.text_trick_steps:
            return args.text_trick_steps, args.text_warm
        return args.trick_steps, args.warm

    arms = {k: (lambda v=v, n=length(k): engine_run(v, *n)) for k, v in cases.items()}
    res = interleave(arms, args.reps)
    mem = {}
    for k, v in cases.items():  # one step under the memory counter (it slows the step down)
        mem[k] = engine_run(v, 4, 2, mem=True)["peak_step_bytes"]
    rows = []
    for k in cases:
        base = "text: none" if k.startswith("text: ") else "none"  # each against its own job
        rows.append(
            {
                "trick": k,
                "step_ms": med(res[k], "step_ms"),
                "time_vs_none": ratio(res[k], res[base], "step_ms"),
                "peak_step_MB": mem[k] / 1e6,
                "mem_vs_none": mem[k] / mem[base],
                "theory": FORMS[k][2] if k in FORMS else theory(*groups[k]),
            }
        )
    out["tricks"] = rows


def section_optim(args, out: dict):
    names = conf_options("optimizer")
    print(f"[optim] {names}", flush=True)
    arms = {
        n: (lambda n=n: engine_run(TRICK_JOB + [f"optimizer={n}"], args.trick_steps, args.warm))
        for n in names
    }
    res = interleave(arms, args.reps)
    base = "adamw"
    rows = []
    for n in names:
        rows.append(
            {
                "optimizer": n,
                "step_ms": med(res[n], "step_ms"),
                "time_vs_adamw": ratio(res[n], res[base], "step_ms"),
                "state_MB": med(res[n], "opt_state_bytes") / 1e6,
                "state_vs_adamw": med(res[n], "opt_state_bytes")
                / med(res[base], "opt_state_bytes"),
            }
        )
    out["optim"] = rows


def section_scaling(args, out: dict):
    from hand_loop import hand_run

    grid = [("batch", b, ["model=mlp", f"trainer.batch_size={b}"]) for b in args.batches]
    grid += [("width", w, ["model=mlp", f"model.hidden={w}"]) for w in args.widths]
    rows = []
    for kind, v, over in grid:
        print(f"[scaling] {kind}={v}", flush=True)
        res = interleave(
            {
                "engine": lambda: engine_run(over, args.steps, args.warm),
                "hand": lambda: hand_run(over, args.steps, args.warm),
            },
            args.reps,
        )
        rows.append(
            {
                "kind": kind,
                "value": v,
                "engine_sps": med(res["engine"], "sps"),
                "hand_sps": med(res["hand"], "sps"),
                "engine_vs_hand": ratio(res["engine"], res["hand"], "sps"),
            }
        )
    out["scaling"] = rows


def section_compile(args, out: dict):
    rows = []
    for job in ("mnist1d MLP", "mnist1d CNN"):
        if job not in args.jobs:
            continue
        print(f"[compile] {job}", flush=True)
        over = JOBS[job]
        res = interleave(
            {
                "eager": lambda: engine_run(over, args.steps, args.warm),
                "compiled": lambda: engine_run(
                    over + ["trainer.compile=true"], args.steps, args.warm
                ),
            },
            args.compile_reps,
        )
        rows.append(
            {
                "job": job,
                "eager_sps": med(res["eager"], "sps"),
                "compiled_sps": med(res["compiled"], "sps"),
                "compiled_vs_eager": ratio(res["compiled"], res["eager"], "sps"),
                "eager_first_step_s": med(res["eager"], "first_step_s"),
                "compiled_first_step_s": med(res["compiled"], "first_step_s"),
            }
        )
    out["compile"] = rows


def section_precision(args, out: dict):
    """trainer.precision=bf16 (autocast) against fp32 on this device, engine only: on CUDA the
    auto choice; on a CPU opt-in, and worth it only where the CPU has bf16 matrix units."""
    rows = []
    jobs = [j for j in args.jobs if j in JOBS]
    for job in jobs:
        print(f"[precision] {job}", flush=True)
        over = JOBS[job]
        n, w = job_steps(args, over)
        res = interleave(
            {
                p: (lambda p=p: engine_run(over + [f"trainer.precision={p}"], n, w))
                for p in ("fp32", "bf16")
            },
            args.reps,
        )
        rows.append(
            {
                "job": job,
                "fp32_sps": med(res["fp32"], "sps"),
                "bf16_sps": med(res["bf16"], "sps"),
                "bf16_vs_fp32": ratio(res["bf16"], res["fp32"], "sps"),
            }
        )
    out["precision"] = rows


def section_data(args, out: dict):
    """trainer.data_on_device=true against false, engine only: on a GPU, slices of resident
    splits against batches gathered on the host, pinned and copied non-blocking."""
    rows = []
    for job in [j for j in args.jobs if j in JOBS]:
        print(f"[data] {job}", flush=True)
        over = JOBS[job]
        n, w = job_steps(args, over)
        res = interleave(
            {
                k: (lambda k=k: engine_run(over + [f"trainer.data_on_device={k}"], n, w))
                for k in ("true", "false")
            },
            args.reps,
        )
        rows.append(
            {
                "job": job,
                "resident_sps": med(res["true"], "sps"),
                "streamed_sps": med(res["false"], "sps"),
                "streamed_vs_resident": ratio(res["false"], res["true"], "sps"),
            }
        )
    out["data"] = rows


# -- report -----------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    cpu, amx = "?", None  # amx: bf16 matrix units (None: unknown)
    try:
        info = Path("/proc/cpuinfo").read_text()
        amx = "amx_bf16" in info.split()
        for line in info.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from runner.gitinfo import commit_info

    commit, dirty = commit_info(ROOT)
    # a copy of the tree without git (the GPU check's device): its caller's word
    if commit == "unknown":
        commit = os.environ.get("TRICKS_COMMIT", "unknown")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "commit": commit + (" (+ uncommitted changes in the tree)" if dirty else ""),
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "cpu_amx": amx,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt(v, spec=".3g"):
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def table(rows: list, cols: list) -> str:
    head = "| " + " | ".join(h for h, _, _ in cols) + " |"
    sep = "|" + "|".join(" --- " for _ in cols) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), s) for _, k, s in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def report(out: dict, argv: list) -> str:
    m = out["machine"]
    lines = [
        f"Command: `python scripts/bench.py {' '.join(argv)}`",
        "",
        f"Commit {m['commit']} · {m['nproc']} cores ({m['cpu']}) · torch {m['torch']} "
        f"({m['torch_threads']} threads) · "
        + (f"GPU {m['gpu']} (CUDA {m['cuda']}) · " if m.get("gpu") else "")
        + f"Python {m['python']} · {m['date_utc']} · "
        f"{out['settings']}",
        "",
    ]
    if "overhead" in out:
        peers = any("hf_sps" in r for r in out["overhead"])
        cols = [
            ("job", "job", ""),
            ("hand loop samples/s", "hand_sps", ".4g"),
            ("engine samples/s", "engine_sps", ".4g"),
            ("engine / hand", "engine_vs_hand", ".3f"),
        ]
        if peers:
            cols += [
                ("HF Trainer samples/s", "hf_sps", ".4g"),
                ("engine / HF", "engine_vs_hf", ".2f"),
                ("Lightning samples/s", "lightning_sps", ".4g"),
                ("engine / Lightning", "engine_vs_lightning", ".2f"),
            ]
        lines += [
            "### Engine overhead and peers (steady state, higher is faster)",
            "",
            table(out["overhead"], cols),
            "",
        ]
        arms = [
            a
            for a in ("engine", "hand", "hf", "lightning")
            if all(f"{a}_model_ms" in r for r in out["overhead"])
        ]
        if arms:  # (no split on CUDA)
            rows = [
                {
                    **r,
                    **{
                        f"{k}_pm": f"{r[f'{k}_ms']:+.2f} ± {r[f'{k}_ci']:.2f}"
                        for k in ("saved_vs_hand", "saved_vs_hf", "saved_vs_lightning")
                        if f"{k}_ms" in r
                    },
                    "model_ms_all": " · ".join(format(r[f"{a}_model_ms"], ".4g") for a in arms),
                }
                for r in out["overhead"]
            ]
            cols = [
                ("job", "job", ""),
                ("hand loop", "hand_framework_ms", ".3g"),
                ("engine", "engine_framework_ms", ".3g"),
            ]
            if peers:
                cols += [
                    ("HF Trainer", "hf_framework_ms", ".3g"),
                    ("Lightning", "lightning_framework_ms", ".3g"),
                ]
            names = {"engine": "engine", "hand": "hand", "hf": "HF", "lightning": "Lightning"}
            cols += [
                ("model ms: " + " · ".join(names[a] for a in arms), "model_ms_all", ""),
                ("engine's saving vs hand loop, ms", "saved_vs_hand_pm", ""),
            ]
            if peers:
                cols += [
                    ("vs HF Trainer, ms", "saved_vs_hf_pm", ""),
                    ("% of a step", "saved_vs_hf_pct", ".2f"),
                    ("vs Lightning, ms", "saved_vs_lightning_pm", ""),
                    ("% of a step", "saved_vs_lightning_pct", ".2f"),
                ]
            lines += [
                "### Per-step time outside the model's forward, backward and update, ms "
                "(the framework's own work; lower is faster)",
                "",
                "The rest of a step (model ms) is the same kernels on the same batches in "
                "every arm. Saving: the other arm's framework time minus the engine's, mean "
                "± 95% CI over the paired repetitions (negative: the engine spends more).",
                "",
                table(rows, cols),
                "",
            ]
        cols = [
            ("job", "job", ""),
            ("hand loop", "hand_first_step_s", ".2f"),
            ("engine", "engine_first_step_s", ".2f"),
        ]
        if peers:
            cols += [
                ("HF Trainer", "hf_first_step_s", ".2f"),
                ("Lightning", "lightning_first_step_s", ".2f"),
            ]
        lines += [
            "### In-process time to the first finished step, s (imports done; data, "
            "model and optimizer built)",
            "",
            table(out["overhead"], cols),
            "",
        ]
    if "startup" in out:
        cols = [
            ("job", "job", ""),
            ("tricks train", "tricks", ".2f"),
            ("hand loop", "hand", ".2f"),
            ("HF Trainer", "hf", ".2f"),
            ("Lightning", "lightning", ".2f"),
        ]
        lines += [
            "### Fresh process: spawn to the end of the first step, s",
            "",
            table(out["startup"], cols),
            "",
        ]
    if "tricks" in out:
        cols = [
            ("trick", "trick", ""),
            ("step ms", "step_ms", ".3g"),
            ("time / none", "time_vs_none", ".2f"),
            ("theory (fwd+bwd passes)", "theory", ""),
            ("peak step MB", "peak_step_MB", ".3g"),
            ("memory / none", "mem_vs_none", ".2f"),
        ]
        lines += [f"### Trick cost ({' '.join(TRICK_JOB)})", "", table(out["tricks"], cols), ""]
    if "optim" in out:
        cols = [
            ("optimizer", "optimizer", ""),
            ("step ms", "step_ms", ".3g"),
            ("time / AdamW", "time_vs_adamw", ".2f"),
            ("state MB", "state_MB", ".3g"),
            ("state / AdamW", "state_vs_adamw", ".2f"),
        ]
        lines += [f"### Optimizers ({' '.join(TRICK_JOB)})", "", table(out["optim"], cols), ""]
    if "scaling" in out:
        cols = [
            ("", "kind", ""),
            ("value", "value", ""),
            ("engine samples/s", "engine_sps", ".4g"),
            ("hand samples/s", "hand_sps", ".4g"),
            ("engine / hand", "engine_vs_hand", ".3f"),
        ]
        lines += [
            "### Scaling (mnist1d MLP; batch 100 / width 100 unless varied)",
            "",
            table(out["scaling"], cols),
            "",
        ]
    if "compile" in out:
        cols = [
            ("job", "job", ""),
            ("eager samples/s", "eager_sps", ".4g"),
            ("compiled samples/s", "compiled_sps", ".4g"),
            ("compiled / eager", "compiled_vs_eager", ".2f"),
            ("eager first step s", "eager_first_step_s", ".2f"),
            ("compiled first step s", "compiled_first_step_s", ".2f"),
        ]
        lines += ["### torch.compile (trainer.compile=true)", "", table(out["compile"], cols), ""]
    if "precision" in out:
        cols = [
            ("job", "job", ""),
            ("fp32 samples/s", "fp32_sps", ".4g"),
            ("bf16 samples/s", "bf16_sps", ".4g"),
            ("bf16 / fp32", "bf16_vs_fp32", ".2f"),
        ]
        amx = m["cpu_amx"]
        lines += [
            "### Precision (trainer.precision, engine; CPU bf16 matrix units (AMX): "
            f"{'yes' if amx else 'no' if amx is False else 'unknown'}, torch CPU kernels: "
            f"{m['cpu_capability']})",
            "",
            table(out["precision"], cols),
            "",
        ]
    if "data" in out:
        cols = [
            ("job", "job", ""),
            ("on device samples/s", "resident_sps", ".4g"),
            ("streamed samples/s", "streamed_sps", ".4g"),
            ("streamed / on device", "streamed_vs_resident", ".2f"),
        ]
        lines += [
            "### Data on the device against streamed from the host (trainer.data_on_device)",
            "",
            table(out["data"], cols),
            "",
        ]
    return "\n".join(lines)


SECTIONS = (
    "overhead",
    "peers",
    "startup",
    "tricks",
    "optim",
    "scaling",
    "compile",
    "precision",
    "data",
)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sections",
        default="peers,startup,tricks,optim,scaling,compile",
        help=f"comma list of {', '.join(SECTIONS)} (peers includes overhead)",
    )
    ap.add_argument(
        "--jobs", default=",".join(DEFAULT_JOBS), help="comma list of " + ", ".join(JOBS)
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--startup-reps", type=int, default=3)
    ap.add_argument("--compile-reps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300, help="steps per measured run")
    ap.add_argument(
        "--warm",
        type=int,
        default=50,
        help="warm-up steps dropped from the steady figure (also log_every)",
    )
    ap.add_argument("--text-steps", type=int, default=60, help="steps of the tweets job")
    ap.add_argument("--text-warm", type=int, default=15)
    ap.add_argument(
        "--trick-steps", type=int, default=150, help="steps of the trick / optimizer runs"
    )
    ap.add_argument(
        "--text-trick-steps",
        type=int,
        default=None,
        help="steps of the trick arms on the tweets Transformer (default: --trick-steps; "
        "their warm-up is --text-warm)",
    )
    ap.add_argument(
        "--only", default=None, help="comma list of trick arms of the tricks section (+ none)"
    )
    ap.add_argument("--startup-jobs", default="mnist1d MLP")
    ap.add_argument("--batches", default="32,128,512")
    ap.add_argument("--widths", default="100,400,1600")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for every measurement (default: torch's own)",
    )
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override added to every job of the in-process sections "
        "(repeatable; e.g. trainer.deterministic=false)",
    )
    ap.add_argument("--quick", action="store_true", help="tiny settings to check the script")
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.child_job)
    if args.quick:
        args.reps, args.steps, args.warm, args.startup_reps, args.compile_reps = 1, 12, 4, 1, 1
        args.text_steps, args.text_warm, args.trick_steps = 8, 4, 12
        args.batches, args.widths = "32,256", "100,800"
    args.jobs = [j.strip() for j in args.jobs.split(",")]
    for job in JOBS:
        JOBS[job] = JOBS[job] + args.override
    TRICK_JOB.extend(args.override)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.widths = [int(w) for w in args.widths.split(",")]
    sections = [s.strip() for s in args.sections.split(",")]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section {bad[0]!r}; choose from {', '.join(SECTIONS)}")

    import torch  # (imports before any timing)

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)  # the startup section's children

    out = {
        "machine": machine(),
        "settings": f"{args.reps} interleaved repetitions of {args.steps}-step runs "
        f"({args.text_steps} for the tweets jobs), the first {args.warm} "
        f"({args.text_warm}) steps dropped",
    }
    t0 = time.perf_counter()
    runs = {
        "overhead": lambda: section_overhead(args, out, with_peers="peers" in sections),
        "startup": lambda: section_startup(args, out),
        "tricks": lambda: section_tricks(args, out),
        "optim": lambda: section_optim(args, out),
        "scaling": lambda: section_scaling(args, out),
        "compile": lambda: section_compile(args, out),
        "precision": lambda: section_precision(args, out),
        "data": lambda: section_data(args, out),
    }
    # in the order asked for (peers is overhead with the peers); the report keeps its own
    order = list(dict.fromkeys("overhead" if s == "peers" else s for s in sections))
    for name in order:
        runs[name]()
        # written after every section: a run stopped by a time limit keeps what it measured
        out["bench_seconds"] = time.perf_counter() - t0
        save(out, argv, args)
    print(report(out, argv))


def save(out: dict, argv: list, args) -> None:
    if args.out:
        Path(args.out).write_text(report(out, argv) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
