"""The @hydra.main entry: validate the config -> build -> fit -> summary.

`tricks train ARGS` hands ARGS to this entry unchanged, so multirun (-m), output directories and
launchers work as in any Hydra app. `python -m runner.main ARGS` (e.g. under torchrun) is the same.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from runner import CONF_DIR
from runner.errors import ConfigError

#: jobs of this process that did not complete (read by the CLI to set the exit code)
FAILED: list[str] = []


def debug() -> bool:
    return os.environ.get("TRICKS_DEBUG", "") not in ("", "0")


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train one run into `run_dir`; returns summary.json's content. Raises ConfigError for bad
    input before anything in `run_dir` is touched."""
    t0 = time.perf_counter()
    from runner.config import to_container, validate

    validate(cfg)
    import torch

    from runner import build, checkpoint, engine
    from runner import device as devmod
    from runner.data.batching import IndexBatcher
    from runner.log import write_json_atomic
    from runner.log.progress import ProgressView

    run_dir = Path(run_dir)
    tcfg = cfg.trainer
    plan = devmod.plan(str(tcfg.device), str(tcfg.precision), compile=bool(tcfg.compile))
    from runner import dist

    d = dist.setup(plan)  # under torchrun / SLURM tasks: process group, cuda:LOCAL_RANK
    run_dir = Path(dist.broadcast_object(str(run_dir), d))  # rank 0's ${now:} run dir
    engine.seed_everything(cfg.seed, tcfg.deterministic)
    devmod.setup_backends(plan)  # TF32 on CUDA

    data = build.data(cfg).to(plan.device)
    model = build.model(cfg, data.info).to(plan.device)
    if tcfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    tricks = build.tricks(cfg)
    opt = build.optimizer(cfg, model, fused_ok=plan.fused)
    for t in tricks:
        opt = t.wrap_optimizer(opt)
    batcher = IndexBatcher(data.train, tcfg.batch_size, seed=cfg.seed,
                           collate=getattr(data, "collate", None), rank=d.rank,
                           world_size=d.world_size)
    steps = engine.total_steps(tcfg, batcher.steps_per_epoch)
    if steps <= 0:
        raise ConfigError("trainer.batch_size", f"batch_size x accum_steps "
                          f"({tcfg.batch_size * tcfg.accum_steps}) exceeds the train split "
                          f"({batcher.n} samples)")
    sched = build.schedule(cfg, opt, steps)
    called = torch.compile(model) if plan.compile else model
    called = dist.wrap(called, d, plan)  # DistributedDataParallel when world_size > 1
    scaler = torch.amp.GradScaler(plan.device.split(":")[0]) if plan.scaler else None
    state = engine.State(cfg=tcfg, plan=plan, model=called, raw_model=model, optimizer=opt,
                         scheduler=sched, tricks=tricks, data=data, batcher=batcher,
                         total_steps=steps, seed=cfg.seed, scaler=scaler, is_main=d.is_main,
                         world_size=d.world_size)
    config = to_container(cfg)
    for t in tricks:
        t.setup(state)

    ckpt_dir = run_dir / "checkpoints"
    resumed = False
    if cfg.resume or dist.auto_resume(run_dir):  # auto: a SLURM job requeued after preemption
        path = Path(cfg.resume) if isinstance(cfg.resume, str) else ckpt_dir / "last.pt"
        ckpt = checkpoint.load(path)
        checkpoint.check_compatible(ckpt["config"], config)
        checkpoint.restore(state, ckpt)
        resumed = True

    # Nothing above wrote to run_dir: bad input has lost nothing.
    if d.is_main:  # only rank 0 writes
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger = build.loggers(cfg, run_dir) if d.is_main else dist.NullLogger()
    logger.start(run_dir, config, rows=state.rows if resumed else None)

    def save_last(s):
        if s.is_main:
            checkpoint.save_atomic(checkpoint.state_to_ckpt(s, config), ckpt_dir / "last.pt")

    def on_eval(s, row):
        if engine.update_best(s, row):
            m = s.eval_model() or s.raw_model
            m = getattr(m, "module", m)
            checkpoint.save_atomic({"format": checkpoint.FORMAT, "model": m.state_dict(),
                                    "step": s.step, "val/acc": row["val/acc"]},
                                   ckpt_dir / "best.pt")

    progress = ProgressView(steps, enabled=tcfg.progress if d.is_main else False,
                            start=state.step)
    old_handlers = engine.install_signal_handlers(state)
    submitit_handler = dist.install_preemption_handler(state)  # SIGUSR2 under submitit
    summary = {"status": "running"}
    try:
        figures = engine.fit(state, logger, progress, checkpoint_fn=save_last, best_fn=on_eval)
        dist.check_in_sync(state)  # DDP replicas must still be equal
        summary = {**figures, "status": "interrupted" if state.stop_requested else "completed"}
        if state.stop_requested:
            summary["error"] = f"stopped by {state.stop_requested} at step {state.step}"
    except engine.TrainingFailed as e:
        summary = {**engine.summary_figures(state), "status": "failed", "error": str(e)}
    except KeyboardInterrupt:
        summary = {**engine.summary_figures(state), "status": "interrupted",
                   "error": f"interrupted at step {state.step}"}
    except Exception as e:
        summary = {**engine.summary_figures(state), "status": "failed",
                   "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        if debug():
            traceback.print_exc()
    finally:
        progress.close()
        import signal

        for s, h in old_handlers.items():
            try:
                signal.signal(s, h)
            except (ValueError, TypeError):
                pass
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["resumed"] = resumed
    if d.enabled:
        summary["world_size"] = d.world_size
    logger.finish(summary)
    if d.is_main:
        if not (run_dir / "summary.json").exists():
            write_json_atomic(run_dir / "summary.json", summary)
        report(summary, run_dir)
    dist.teardown(d)  # destroy the process group (no collective follows)
    if submitit_handler is not None and state.stop_requested == dist.PREEMPT_NAME:
        dist.requeue(submitit_handler)  # last.pt is written: let submitit requeue this job
    dist.restore_preemption_handler(submitit_handler)
    return summary


def report(summary: dict, run_dir: Path) -> None:
    from rich.console import Console

    c = Console(stderr=True, highlight=False)
    st = summary.get("status")
    if st == "completed":
        acc = summary.get("test/acc")
        acc_s = f"{acc:.4f}" if acc is not None else "n/a"
        c.print(f"[bold green]done[/] test/acc {acc_s} (at best val/acc "
                f"{summary.get('best/val/acc') or 0:.4f}, step {summary.get('best/step')}) · "
                f"{summary['steps']} steps · {summary['wall_seconds']:.1f} s · run dir {run_dir}")
    else:
        c.print(f"[bold red]{st}[/]: {summary.get('error')} · run dir {run_dir}")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        summary = run(cfg, run_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        FAILED.append(str(run_dir))
        if not multirun:
            sys.exit(2)
        from runner.log import write_json_atomic  # the sweep goes on; this job says why not

        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": str(e)})
        return float("nan")  # a sweeper (Optuna) records the trial as failed and goes on
    if summary.get("status") != "completed":
        FAILED.append(str(run_dir))
        if not multirun:
            sys.exit(1 if summary.get("status") == "failed" else 3)
    return objective(summary)


def objective(summary: dict) -> float:
    """What the task function returns, hence what an Optuna sweep (hydra/sweeper=...) optimizes:
    the best validation accuracy (maximize); NaN marks a failed trial."""
    v = summary.get("best/val/acc") if summary.get("status") == "completed" else None
    return float(v) if v is not None else float("nan")


if __name__ == "__main__":
    hydra_main()
