"""The @hydra.main entry: `run` = setup (validate, build, resume) -> train (fit) -> finish
(summary, checkpoints, teardown).

`tricks train ARGS` hands ARGS to this entry unchanged, so multirun (-m), output directories and
launchers work as in any Hydra app. `python -m runner.main ARGS` (e.g. under torchrun) is the same.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from runner import CONF_DIR
from runner.config import first_difference, model_defaults, to_container, validate
from runner.errors import ConfigError
from runner.gitinfo import source_commit
from runner.log import write_json_atomic
from runner.log.progress import ProgressView, announce

#: jobs of this process that did not complete (read by the CLI to set the exit code)
FAILED: list[str] = []
#: run dirs this process has started writing into (a later crash records a failed summary)
WROTE: set[str] = set()
#: a run dir's checkpoint folder
CKPT = "checkpoints"


def debug() -> bool:
    return os.environ.get("TRICKS_DEBUG", "") not in ("", "0")


class KillAtStep:
    """Tests only (installed by `run` when TRICKS_TEST_KILL_AT_STEP is set): "N" makes this
    process send itself a real SIGKILL right after optimizer step N, "N:TERM" a SIGTERM."""

    def __init__(self, spec: str):

        at, _, sig = spec.partition(":")
        self.step, self.signal = int(at), getattr(signal, f"SIG{sig or 'KILL'}")

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), self.signal)


#: callbacks every run of this process passes to `engine.fit` (objects with `on_step_start(state)`
#: and/or `on_step_end(state)`), for a caller that runs `tricks train` through the CLI in its own
#: process and cannot pass them to `run` (the benchmark's first-step clock)
CALLBACKS: list = []


@dataclass
class Job:
    """One run between its steps: what `setup` builds and `train` and `finish` use."""

    cfg: DictConfig
    run_dir: Path
    dist: object  # runner.dist.Dist
    state: object  # runner.engine.State
    config: dict  # the resolved config, as checkpoints and loggers record it
    logger: object = None
    resumed: bool = False
    submitit: object = None  # the preemption handler train installed, if any
    source: tuple = ("unknown", False)  # (commit, dirty) of the tricks checkout running it
    t0: float = 0.0  # perf_counter when this process started the run
    wall_before: float = 0.0  # wall seconds of the processes that ran it before (resumes)


def run(cfg: DictConfig, run_dir: str | Path, callbacks=()) -> dict:
    """Train one run into `run_dir`; returns summary.json's content. Raises ConfigError for bad
    input before anything in `run_dir` is touched. `callbacks`: see engine.fit."""
    t0 = time.perf_counter()
    job = setup(cfg, Path(run_dir))
    job.t0 = t0
    kill = os.environ.get("TRICKS_TEST_KILL_AT_STEP")  # read once, here: the loop names no test
    callbacks = [*CALLBACKS, *callbacks, *([KillAtStep(kill)] if kill else [])]
    summary = train(job, callbacks)
    return finish(job, summary, t0)


def setup(cfg: DictConfig, run_dir: Path) -> Job:
    """Validate, place the process (device, DDP), build everything, resume, open the run dir."""

    validate(cfg)
    from runner import build, dist, engine  # torch: after validate(), so bad input fails fast
    from runner import device as devmod  # torch (as above)

    tcfg = cfg.trainer
    plan = devmod.plan(str(tcfg.device), str(tcfg.precision), compile=bool(tcfg.compile))
    d = dist.setup(plan)  # under torchrun / SLURM tasks: process group, cuda:LOCAL_RANK
    run_dir = Path(dist.broadcast_object(str(run_dir), d))  # rank 0's ${now:} run dir
    engine.seed_everything(cfg.seed, tcfg.deterministic)
    devmod.setup_backends(plan)  # TF32 on CUDA
    state = build_state(cfg, plan, d)
    job = Job(cfg=cfg, run_dir=run_dir, dist=d, state=state, config=to_container(cfg))
    if d.is_main:  # only rank 0 writes summary.json
        job.source = source_commit()
    for t in state.tricks:
        t.setup(state)
    # after the initialisation, before a resume restores the checkpoint's generators
    engine.offset_streams(cfg.seed, tcfg.get("stream_offset", 0))
    saved_cfg = resume(job)
    # building the sinks does no I/O: a bad logger key is rejected before run_dir is written
    job.logger = build.loggers(cfg, run_dir) if d.is_main else dist.NullLogger()
    # Nothing above wrote to run_dir: bad input has lost nothing.
    if d.is_main:  # only rank 0 writes
        run_dir.mkdir(parents=True, exist_ok=True)
        WROTE.add(str(run_dir))
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(saved_cfg, resolve=True))
    job.logger.start(run_dir, job.config, rows=state.rows if job.resumed else None)
    return job


def build_state(cfg: DictConfig, plan, d):
    """Data, model, tricks, optimizer, schedule and the engine's State, on this process's device."""
    import torch  # after validate(): bad input fails fast

    from runner import build, dist, engine  # torch: after validate(), so bad input fails fast
    from runner import device as devmod  # torch (as above)
    from runner.data.batching import IndexBatcher  # torch (as above)

    tcfg = cfg.trainer
    data = build.data(cfg)
    data = data.to(
        plan.device, resident=devmod.data_on_device(tcfg.data_on_device, plan, data.nbytes())
    )
    loss = build.loss(cfg, data)  # checked against the labels (multi-hot or not)
    model = build.model(cfg, data.info).to(plan.device)
    if tcfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    tricks = build.tricks(cfg)
    opt = build.optimizer(cfg, model, fused_ok=plan.fused)
    for t in tricks:
        opt = t.wrap_optimizer(opt)
    batcher = IndexBatcher(
        data.train,
        tcfg.batch_size,
        seed=engine.stream_seed(cfg.seed, tcfg.get("stream_offset", 0)),
        collate=getattr(data, "collate", None),
        rank=d.rank,
        world_size=d.world_size,
        device=data.device,
        group=tcfg.accum_steps,  # length buckets by the optimizer batch (accumulation = it)
    )
    steps = engine.total_steps(tcfg, batcher.steps_per_epoch)
    if steps <= 0:
        raise ConfigError(
            "trainer.batch_size",
            f"batch_size x accum_steps "
            f"({tcfg.batch_size * tcfg.accum_steps}) exceeds the train split "
            f"({batcher.n} samples)",
        )
    sched = build.schedule(cfg, opt, steps)
    called = torch.compile(model) if plan.compile else model
    called = dist.wrap(called, d, plan)  # DistributedDataParallel when world_size > 1
    scaler = torch.amp.GradScaler(plan.device.split(":")[0]) if plan.scaler else None
    return engine.State(
        cfg=tcfg,
        plan=plan,
        model=called,
        raw_model=model,
        optimizer=opt,
        scheduler=sched,
        tricks=tricks,
        data=data,
        batcher=batcher,
        total_steps=steps,
        seed=cfg.seed,
        scaler=scaler,
        is_main=d.is_main,
        world_size=d.world_size,
        loss=loss,
    )


def resume(job: Job) -> DictConfig:
    """Restore the checkpoint `resume` names (or a requeued SLURM job's own); returns the config
    to write as config.yaml."""
    from runner import checkpoint, dist  # torch: kept out of main's import (see setup)

    cfg = job.cfg
    if not (cfg.resume or dist.auto_resume(job.run_dir)):  # auto: requeued after preemption
        return cfg
    path = Path(cfg.resume) if isinstance(cfg.resume, str) else job.run_dir / CKPT / "last.pt"
    ckpt = checkpoint.load(path)
    checkpoint.check_compatible(ckpt["config"], job.config)
    checkpoint.restore(job.state, ckpt)
    job.resumed = True
    # checkpoints from before wall_seconds was kept: the training time is a lower bound
    job.wall_before = float(ckpt.get("wall_seconds", ckpt["train_seconds"]))
    # config.yaml keeps the original `resume` value: a resumed job of a sweep must group with
    # its siblings in `tricks compare`
    saved_cfg = cfg.copy()
    saved_cfg.resume = ckpt["config"].get("resume", False)
    return saved_cfg


def _checkpointers(job: Job):
    """(save last.pt, on an evaluation: track the best and save best.pt) for engine.fit."""
    from runner import checkpoint, engine  # torch: kept out of main's import (see setup)

    ckpt_dir = job.run_dir / CKPT

    def save_last(s):
        if s.is_main:
            ckpt = checkpoint.state_to_ckpt(s, job.config)
            ckpt["wall_seconds"] = job.wall_before + time.perf_counter() - job.t0  # cumulative
            checkpoint.save_atomic(ckpt, ckpt_dir / "last.pt")

    def on_eval(s, row):
        if engine.update_best(s, row):
            m = s.eval_model() or s.raw_model
            m = getattr(m, "module", m)
            checkpoint.save_atomic(
                {
                    "format": checkpoint.FORMAT,
                    "model": m.state_dict(),
                    "step": s.step,
                    "val/acc": row["val/acc"],
                },
                ckpt_dir / "best.pt",
            )

    return save_last, on_eval


def train(job: Job, callbacks: list) -> dict:
    """engine.fit under the signal handlers; returns the summary (status, error, figures)."""
    from runner import dist, engine  # torch: kept out of main's import (see setup)

    state, d = job.state, job.dist
    save_last, on_eval = _checkpointers(job)
    progress = ProgressView(
        state.total_steps,
        enabled=state.cfg.progress if d.is_main else False,
        start=state.step,
        plan=plan_line(job) if d.is_main else None,
        shorten=(lambda f: shorten_hint(job.cfg, state, f)) if state.plan.device == "cpu" else None,
    )
    old_handlers = engine.install_signal_handlers(state)
    job.submitit = dist.install_preemption_handler(state)  # SIGUSR2 under submitit
    summary = {"status": "running"}
    try:
        figures = engine.fit(
            state,
            job.logger,
            progress,
            checkpoint_fn=save_last,
            best_fn=on_eval,
            callbacks=[*callbacks, progress] if progress.shorten else callbacks,
        )
        dist.check_in_sync(state)  # DDP replicas must still be equal
        stopped = state.stop_requested and state.step < state.total_steps
        summary = {**figures, "status": "interrupted" if stopped else "completed"}
        if stopped:
            summary["error"] = f"stopped by {state.stop_requested} at step {state.step}"
    except engine.TrainingFailed as e:
        summary = {**engine.summary_figures(state), "status": "failed", "error": str(e)}
    except KeyboardInterrupt:
        summary = {
            **engine.summary_figures(state),
            "status": "interrupted",
            "error": f"interrupted at step {state.step}",
        }
    except Exception as e:
        summary = {
            **engine.summary_figures(state),
            "status": "failed",
            "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
        }
        if debug():
            traceback.print_exc()
    finally:
        progress.close()
        _restore_signals(old_handlers)
    return summary


def _restore_signals(old_handlers: dict) -> None:

    for s, h in old_handlers.items():
        try:
            signal.signal(s, h)
        except (ValueError, TypeError):
            pass


def finish(job: Job, summary: dict, t0: float) -> dict:
    """Complete the summary, write it, prune checkpoints, tear DDP down, requeue if preempted."""
    from runner import checkpoint, dist  # torch: kept out of main's import (see setup)

    d, run_dir = job.dist, job.run_dir
    here = time.perf_counter() - t0
    summary["wall_seconds"] = job.wall_before + here  # every process that ran it (resumes)
    summary["process_wall_seconds"] = here
    summary["resumed"] = job.resumed
    summary["commit"], summary["dirty"] = job.source  # the code that finished this run
    if d.enabled:
        summary["world_size"] = d.world_size
    job.logger.finish(summary)
    if d.is_main:
        if not (run_dir / "summary.json").exists():
            write_json_atomic(run_dir / "summary.json", summary)
        if summary["status"] == "completed":
            checkpoint.prune(run_dir / CKPT, job.cfg.trainer.keep_checkpoints)
        report(summary, run_dir, world_size=d.world_size)
    dist.teardown(d)  # destroy the process group (no collective follows)
    if job.submitit is not None and job.state.stop_requested == dist.PREEMPT_NAME:
        dist.requeue(job.submitit)  # last.pt is written: let submitit requeue this job
    dist.restore_preemption_handler(job.submitit)
    return summary


def plan_line(job: Job) -> str:
    """The run's first line: its length in optimizer steps (and where that came from), the batch,
    the device, early stopping, rows the last partial batch leaves out; the model's defaults are
    appended by the progress view (runner.log.progress.announce)."""
    state, tc = job.state, job.cfg.trainer
    spe, total = state.optimizer_steps_per_epoch, state.total_steps
    if tc.max_steps is not None:
        length = f"{total:,} steps (trainer.max_steps; {spe:,} an epoch)"
    else:
        length = f"{total:,} steps ({tc.epochs} epochs of {spe:,})"
    b = state.batcher
    batch = f"batch {b.batch_size}"
    if tc.accum_steps > 1:
        batch += f" x {tc.accum_steps} accumulated"
    if state.world_size > 1:
        batch += f" x {state.world_size} processes"
    parts = [f"train {length}, {batch}, on {state.plan.device}"]
    if state.step:
        parts.append(f"resuming at step {state.step:,}")
    if tc.patience:
        gain = f" over {tc.min_delta}" if tc.min_delta else ""
        parts.append(
            f"stops early after {tc.patience} evaluations without a gain in "
            f"{state.loss.select}{gain}"
        )
    left = b.n - spe * tc.accum_steps * b.global_batch
    if left:  # constant batches keep every step's statistics alike; reshuffled every epoch
        parts.append(
            f"{left:,} of {b.n:,} train rows sit out each epoch (the partial last batch; "
            f"a different {left:,} each epoch)"
        )
    return " · ".join(parts)


def shorten_hint(cfg: DictConfig, state, fraction: float) -> str:
    """The override that cuts this run to `fraction` of its planned length (a CPU run predicted
    over 30 minutes says it)."""
    tc = cfg.trainer
    if tc.max_steps is None:
        epochs = int(tc.epochs * fraction)
        if epochs >= 1:
            return f"trainer.epochs={epochs}"
    return f"trainer.max_steps={max(1, int(state.total_steps * fraction))}"


#: what resumes this process's single run: the CLI arguments that made it (set by hydra_main)
RESUME_ARGS: list[str] = []


def resume_command(run_dir: Path, world_size: int = 1) -> str:
    """The command that resumes the run in `run_dir`: its own overrides, resume=true and its
    directory (and --nproc under DDP)."""

    args = [
        a
        for a in RESUME_ARGS
        if not a.lstrip("+~").startswith(("resume=", "hydra.run.dir=", "hydra.output_subdir="))
    ]
    if world_size > 1:
        args = ["--nproc", str(world_size), *args]
    args += ["resume=true", f"hydra.run.dir={run_dir}"]
    return "tricks train " + " ".join(shlex.quote(a) for a in args)


def report(summary: dict, run_dir: Path, world_size: int = 1) -> None:
    """The run's last line: the result on stdout (`tricks train > log` keeps it); a failure or
    an interruption, with the command that resumes it, on stderr."""

    st = summary.get("status")
    if st == "completed":
        c = Console(file=sys.stdout, highlight=False, soft_wrap=True)  # one line, never wrapped
        sel = str(summary.get("select") or "val/acc")  # val/acc, or val/f1 multi-label
        m = sel.split("/", 1)[1]
        acc = summary.get(f"test/{m}")
        acc_s = f"{acc:.4f}" if acc is not None else "n/a"
        early = " (stopped early)" if summary.get("stopped_early") else ""
        c.print(
            f"[bold green]done[/] test/{m} {acc_s} (at best {sel} "
            f"{summary.get('best/' + sel) or 0:.4f}, step {summary.get('best/step')}) · "
            f"{summary['steps']} steps{early} · {summary['wall_seconds']:.1f} s · run dir "
            f"{escape(str(run_dir))}"
        )
        return
    c = Console(stderr=True, highlight=False, soft_wrap=True)
    line = f"[bold red]{st}[/]: {escape(str(summary.get('error')))} · run dir "
    line += escape(str(run_dir))
    if st == "interrupted" and RESUME_ARGS and (run_dir / CKPT / "last.pt").is_file():
        line += f" · resume: {escape(resume_command(run_dir, world_size))}"
    c.print(line)


#: the sweep directory of this process's multirun (read by the CLI for its resume hint)
SWEEP_DIR: list[str] = []

# Keys that may differ between a sweep job's earlier attempt and its re-run.
_RERUN_FREE = (
    "resume",
    "trainer.progress",
    "logger",
    "trainer.keep_checkpoints",
    "trainer.data_on_device",
    "model.train_with",
)


def sweep_job_plan(cfg: DictConfig, job_dir: Path) -> str:
    """What a re-run sweep does with this job: 'skip' (a completed run of the same config is
    there), 'resume' (its checkpoint is there), 'fresh'. A job dir holding another config's run
    is a ConfigError (nothing is touched)."""

    cfg_file = job_dir / "config.yaml"
    if not cfg_file.exists():
        return "fresh"
    try:
        old = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=True)
    except Exception:
        return "fresh"  # a job killed while writing its config: nothing worth keeping
    diff = first_difference(old, to_container(cfg), _RERUN_FREE)
    if diff is not None:
        raise ConfigError(
            "hydra.sweep.dir",
            f"{job_dir} holds a run of another config ({diff[0]} differs); it is left as is",
            "a new hydra.sweep.dir, or the same sweep command as before",
        )
    try:
        done = json.loads((job_dir / "summary.json").read_text()).get("status") == "completed"
    except (OSError, ValueError, AttributeError):
        done = False
    if done:
        return "skip"
    return "resume" if (job_dir / "checkpoints" / "last.pt").is_file() else "fresh"


def _drop_empty_run_dir(run_dir: Path) -> None:
    """After bad input in a single run, remove the directory Hydra made for it if it holds
    nothing but Hydra's own files (.hydra/, an empty main.log): no litter, no run lost."""
    try:
        names = {p.name for p in run_dir.iterdir()}
        if not names <= {".hydra", "main.log"}:
            return
        log = run_dir / "main.log"
        if log.exists() and log.stat().st_size:
            return
        hyd = run_dir / ".hydra"
        if hyd.exists() and not {p.name for p in hyd.iterdir()} <= {
            "config.yaml",
            "hydra.yaml",
            "overrides.yaml",
        }:
            return

        shutil.rmtree(run_dir)
    except OSError:
        pass


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    """One job. In a multirun sweep a failing job records its failure (summary.json with the
    error) and the sweep goes on; a re-run of the sweep into the same hydra.sweep.dir skips
    completed jobs and resumes interrupted ones; SIGTERM/SIGINT stops the whole sweep."""

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun and not SWEEP_DIR:
        SWEEP_DIR.append(str(hc.sweep.dir))

    notes = model_defaults(cfg)  # where a default came from: said when training starts
    announce("defaults: " + "; ".join(notes) if notes else None)
    if not multirun:  # (a sweep's jobs resume by re-running the sweep: runner.cli says how)
        RESUME_ARGS[:] = _cli_args(hc)

    def job_failed(msg: str, code: int, write: bool):
        print(f"error: {msg}", file=sys.stderr)
        FAILED.append(str(run_dir))
        if write:  # in a sweep: the sweep goes on; this job says why not
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": msg})
        if not multirun:
            _drop_empty_run_dir(run_dir)
            sys.exit(code)
        return float("nan")  # a sweeper (Optuna) records the trial as failed and goes on

    if multirun and not cfg.resume:
        try:
            plan = sweep_job_plan(cfg, run_dir)
        except ConfigError as e:
            return job_failed(str(e), 2, write=False)
        if plan == "skip":
            print(f"skip {run_dir}: completed already", file=sys.stderr)

            return objective(json.loads((run_dir / "summary.json").read_text()))
        if plan == "resume":
            cfg = cfg.copy()
            cfg.resume = True
    from runner.stack import STACK  # torch: imported once the input checks have passed

    if multirun and STACK["size"] > 1:  # trained with its stack after the sweep is listed
        STACK["jobs"].append((OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), run_dir))
        return float("nan")
    try:
        summary = run(cfg, run_dir)
    except ConfigError as e:  # raised before run() writes anything
        return job_failed(str(e), 2, write=multirun)
    except Exception as e:  # a bug or an environment problem: one line (traceback: TRICKS_DEBUG=1)
        if debug():
            traceback.print_exc()
        first = str(e).splitlines()[0] if str(e) else ""
        started = str(run_dir) in WROTE
        return job_failed(f"{type(e).__name__}: {first}", 1, write=multirun or started)
    if summary.get("status") != "completed":
        FAILED.append(str(run_dir))
        code = 1 if summary.get("status") == "failed" else 3
        if not multirun or code == 3:  # preemption / Ctrl-C stops the whole sweep
            sys.exit(code)
    return objective(summary)


def _cli_args(hc) -> list[str]:
    """The arguments of `tricks train` that compose this job's config again: a config dir and
    name of the user's own, then the task overrides."""
    args = []
    for src in hc.runtime.config_sources:
        if src.provider == "command-line" and src.schema == "file":
            args += ["--config-dir", str(src.path)]
    if hc.job.config_name and hc.job.config_name != "train":
        args += ["--config-name", str(hc.job.config_name)]
    return [*args, *hc.overrides.task]


def objective(summary: dict) -> float:
    """What the task function returns, hence what an Optuna sweep (hydra/sweeper=...) optimizes:
    the best value of the selection metric (trainer.select: val/acc, or val/f1 for a multi-label
    loss; maximize); NaN marks a failed trial."""
    key = "best/" + str(summary.get("select") or "val/acc")
    v = summary.get(key) if summary.get("status") == "completed" else None
    return float(v) if v is not None else float("nan")


if __name__ == "__main__":
    hydra_main()
