"""`tricks`: train, sweep, compare and list. `train` hands its arguments to the @hydra.main entry
unchanged. What pulls in Hydra, OmegaConf, torch, matplotlib or rich is imported inside the
command that needs it, so `tricks --help` and `tricks list` start fast (each such import says so);
the rest is imported here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer

from runner import CONF_DIR, EXPERIMENTS_DIR
from runner.errors import ConfigError, closest

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="A lab bench for deep-learning training tricks: one engine, Hydra configs, "
    "seed-aware verdicts.\n\n"
    "  tricks train                                   # MLP on mnist1d, CPU, < 1 min\n\n"
    "  tricks train optimizer=lion 'reg=\\[rdrop]'      # compose tricks by config\n\n"
    "  tricks train -m optimizer=adamw,sgd seed=0,1,2 # sweep\n\n"
    "  tricks compare multirun/                       # which trick helped, how sure\n\n"
    "  tricks list [GROUP]                            # the options of each config group",
)


def _fail(msg: str, code: int = 2):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


class _HydraRecord:
    """Hydra writes <run dir>/.hydra/ before the run validates what only building can check
    (dataset files, model ranges). For a single run into an existing directory, keep those files'
    bytes so bad input leaves the directory byte-identical."""

    def __init__(self, args: list[str]):
        from runner.overrides import hydra_value  # Hydra's parser: lazy for a fast --help

        self.files: dict | None = None
        if "-m" in args or "--multirun" in args:
            return
        d = hydra_value([a for a in args if a.lstrip("+~").startswith("hydra.")], "hydra.run.dir")
        if d is None or "${" in d or not Path(d).is_dir():
            return
        self.dir = Path(d) / ".hydra"
        self.files = (
            {p: p.read_bytes() for p in self.dir.iterdir() if p.is_file()}
            if self.dir.is_dir()
            else {}
        )
        self.top = set(Path(d).iterdir())  # Hydra's job log (main.log) may appear, empty

    def restore(self) -> None:
        if self.files is None or not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            if p.is_file() and p not in self.files:
                p.unlink()
        for p, b in self.files.items():
            p.write_bytes(b)
        if not self.files:
            try:
                self.dir.rmdir()
            except OSError:
                pass
        for p in set(self.dir.parent.iterdir()) - self.top:
            if p.is_file() and p.stat().st_size == 0:
                p.unlink()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context):
    """Train one run, or sweep with -m. Arguments are Hydra overrides.

    Examples:

      tricks train model=cnn1d optimizer=sgd trainer.epochs=30 seed=3

      tricks train 'reg=\\[rdrop,flooding]' reg.flooding.b=0.05

      tricks train -m optimizer=adamw,sgd seed=0,1,2

      tricks train resume=true hydra.run.dir=runs/2026-11-22/10-00-00

      tricks train --nproc 4 trainer.batch_size=64     # data-parallel: 4 processes (torchrun)

    --nproc N re-launches the run through torch.distributed.run (torchrun --standalone) with N
    processes, one per GPU (gloo on CPU); trainer.batch_size is per process. Multi-node: call
    torchrun yourself (`torchrun --nnodes ... -m runner.main ARGS`), see docs/scale.md.
    Hydra's own flags pass through: --cfg job (print the config), --multirun/-m, --hydra-help.
    Outputs: runs/DATE/TIME/ (one run) or multirun/DATE/TIME/N/ (sweep jobs), each with
    config.yaml, metrics.jsonl, summary.json and checkpoints/.
    """
    from runner.overrides import precheck  # Hydra's parser: lazy for a fast --help

    args = list(ctx.args)
    nproc, args = _pop_nproc(args)
    stack, args = _pop_stack(args)
    if not any(a in ("--cfg", "-c", "--info", "-i", "--hydra-help", "--help") for a in args):
        try:
            precheck(args)
        except ConfigError as e:
            _fail(str(e))
    if nproc > 1:
        raise typer.Exit(_launch_ddp(nproc, args))
    from runner import main as entry  # torch: after the checks, so bad input fails fast
    from runner.stack import STACK

    STACK["size"] = stack
    if (
        "resume=true" in [a.lower() for a in args]
        and "-m" not in args
        and "--multirun" not in args
        and not any(a.lstrip("+~").startswith("hydra.output_subdir") for a in args)
    ):
        args.append("hydra.output_subdir=null")  # keep the run's original .hydra/ record
    if any(a in ("--cfg", "-c") for a in args) and "--resolve" not in args:
        args.append("--resolve")  # show the values used (model defaults are interpolations)
    sys.argv = ["tricks-train", *args]
    keep = _HydraRecord(args)
    code = 0
    try:
        entry.hydra_main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    if STACK["jobs"] and not code:  # --stack: the sweep's jobs, trained in stacks
        from runner import stack_run  # torch: lazy for a fast --help

        code = stack_run.run_jobs(STACK["jobs"], stack)
    if code == 2:  # bad input found by the run itself: undo Hydra's rewrite of .hydra/
        keep.restore()
    if entry.FAILED and entry.SWEEP_DIR:
        typer.echo(
            f"{len(entry.FAILED)} job(s) did not complete: " + ", ".join(entry.FAILED[:5]), err=True
        )
        typer.echo(
            f"to retry them (completed jobs are skipped, interrupted ones resume): "
            f"re-run the same command with hydra.sweep.dir={entry.SWEEP_DIR[0]}",
            err=True,
        )
        code = code or 1
    if code:
        raise typer.Exit(code)


def _pop_count(args: list[str], flag: str, what: str) -> tuple[int, list[str]]:
    """Take `FLAG N` / `FLAG=N` (a positive integer, default 1) out of the Hydra arguments."""
    rest, n, i = [], 1, 0
    while i < len(args):
        a = args[i]
        if a == flag or a.startswith(flag + "="):
            val = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in a else 2
            if not val.isdigit() or int(val) < 1:
                _fail(f"{flag}: must be a positive integer{what}, got {val!r}")
            n = int(val)
            continue
        rest.append(a)
        i += 1
    return n, rest


def _pop_nproc(args: list[str]) -> tuple[int, list[str]]:
    """Take `--nproc N` / `--nproc=N` out of the Hydra arguments."""
    return _pop_count(args, "--nproc", "")


def _pop_stack(args: list[str]) -> tuple[int, list[str]]:
    """Take `--stack K` / `--stack=K` (a sweep's jobs trained K at a time as one stacked model,
    runner.stack_run) out of the Hydra arguments."""
    k, rest = _pop_count(args, "--stack", " (members per stack)")
    if k > 1 and not any(a in ("-m", "--multirun") for a in rest):
        _fail("--stack trains a sweep's jobs together: add -m and a sweep (e.g. seed=0,1,2,3)")
    return k, rest


def _launch_ddp(nproc: int, args: list[str]) -> int:
    """One data-parallel run: torch.distributed.run starts `nproc` copies of runner.main, which
    join one process group (runner.dist). Returns torchrun's exit code."""
    if any(a in ("-m", "--multirun") for a in args):
        _fail(
            "--nproc starts one data-parallel run, not a sweep; sweep DDP runs with "
            "hydra/launcher=slurm hydra.launcher.tasks_per_node=N (see docs/scale.md)"
        )
    if not any(a.startswith("hydra.run.dir=") for a in args):
        # every process must agree on the run directory, so resolve ${now:} once, here
        # (Hydra and OmegaConf: lazy for a fast --help)
        from hydra.core.utils import setup_globals
        from omegaconf import OmegaConf

        setup_globals()  # registers the ${now:} resolver
        pattern = OmegaConf.load(CONF_DIR / "train.yaml").hydra.run._get_node("dir")._value()
        args = [*args, f"hydra.run.dir={OmegaConf.create({'d': pattern}).d}"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "runner.main",
        *args,
    ]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:  # torchrun forwards the signal; the ranks checkpoint and stop
        return 3


@app.command("list")
def list_(group: Optional[str] = typer.Argument(None, help="A config group, e.g. optimizer")):
    """Show the config groups and their options, each with its one-line description."""
    # rich's table and OmegaConf (through runner.config): lazy, so `tricks --help` stays fast
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from runner.config import TRICK_GROUPS, describe, groups, options, trick_target
    from runner.facts import summary

    all_groups = groups()
    if group is not None and group not in all_groups:
        _fail(
            f"unknown config group {group!r}{closest(group, all_groups)} "
            f"(allowed: {', '.join(all_groups)})"
        )
    rows = []
    for g in [group] if group else all_groups:
        for i, o in enumerate(options(g)):
            facts = summary(trick_target(g, o)) if g in TRICK_GROUPS else ""
            rows.append((g if i == 0 else "", o, facts, describe(g, o)))
    # one line per option at any width: names and costs whole, the help cut to fit (ellipsis)
    console = Console()
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_LIST_HEADER[:3])]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for h, w in zip(_LIST_HEADER, widths):
        table.add_column(h, width=w, no_wrap=True)  # cost: a trick's passes/step, its `order`
    room = console.width - sum(widths) - 2 * len(widths)
    table.add_column(_LIST_HEADER[3], no_wrap=True, overflow="ellipsis", max_width=max(room, 10))
    for r in rows:
        table.add_row(*(escape(x) for x in r))
    console.print(table)


_LIST_HEADER = ("group", "option", "cost, place", "description")


@app.command()
def compare(
    paths: List[str] = typer.Argument(
        ...,
        help=r"Run dirs, sweep dirs, or wandb:entity/project\[/group]",  # \[: not rich markup
    ),
    metric: str = typer.Option("test/acc", help="Summary metric to compare"),
    baseline: Optional[str] = typer.Option(None, help="KEY=VALUE selecting the baseline group"),
    out: Optional[str] = typer.Option(
        None, help="Directory for report.md/html, summary.csv, plots"
    ),
    wandb: bool = typer.Option(
        False,
        "--wandb",
        help="Also log the verdict (table, plots, "
        "headline) as one W&B run in the sweep's project and group",
    ),
):
    """Aggregate runs over seeds: mean, 95% CI, difference to the baseline, p-value, cost."""
    try:  # lazy: matplotlib and scipy, and the report extras may be missing
        from runner import compare as cmp
    except ImportError as e:
        _fail(f"tricks compare needs the report extras ({e.name}); pip install 'tricks[report]'")

    try:
        code = cmp.main(paths, metric=metric, baseline=baseline, out=out, wandb=wandb)
    except ConfigError as e:
        _fail(str(e))
    raise typer.Exit(code or 0)


def _study_help() -> str:
    """`tricks study --help`: the protocol in brief, and the study files of experiments/."""
    text = (
        "Run a study: every arm tuned with the same budget of quasi-random trials, chosen on "
        "a validation metric, confirmed on fresh seeds, compared with the baseline "
        "(Holm-adjusted p). Writes DIR/study.json, report.md/.html, summary.csv, PNGs and "
        "the run dirs DIR/runs/...; re-running on DIR resumes.\n\n"
        "  tricks study experiments/flooding/study.yaml --parallel 2\n\n"
        "  tricks study my.yaml trainer.device=cuda --out studies/my   # OVERRIDES: every run"
        "\n\n  tricks study my.yaml --dry-run                # the plan, nothing run"
        "\n\n  tricks study my.yaml --workloads a --out D    # a piece: one session or machine"
        "\n\n  tricks study my.yaml --workloads b --out D    # the next: D's report holds both"
    )
    found = []
    for p in sorted(EXPERIMENTS_DIR.glob("*/study.yaml")):
        first = next(
            (
                l.strip().lstrip("#").strip()
                for l in p.read_text().splitlines()
                if l.strip().startswith("#")
            ),
            "",
        )
        found.append(f"  experiments/{p.parent.name}/study.yaml  {first}")
    if found:
        text += "\n\nStudy files in experiments/:\n\n" + "\n\n".join(found)
    return text


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, help=_study_help()
)
def study(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="The study file (YAML), or with --report-only its DIR"),
    out: Optional[str] = typer.Option(None, help="Study dir (default studies/NAME)"),
    parallel: int = typer.Option(1, help="Worker processes (one torch thread each on CPU)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run nothing"),
    report_only: bool = typer.Option(False, "--report-only", help="Re-make the report of DIR"),
    workloads: Optional[str] = typer.Option(
        None,
        "--workloads",
        help="Run only these workloads (a,b); DIR's other workloads keep their earlier records",
    ),
    wandb: bool = typer.Option(False, "--wandb", help="Also log the verdict table to W&B"),
    storage: Optional[str] = typer.Option(
        None,
        "--storage",
        help="The ledger's Optuna storage URL (default sqlite:///DIR/study.db; "
        "postgresql://... on a cluster)",
    ),
    status: bool = typer.Option(
        False, "--status", help="Print the ledger's progress (any machine); run nothing"
    ),
    heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between workers' heartbeats"),
    slurm: int = typer.Option(
        0, "--slurm", help="Also start N `tricks worker` jobs on SLURM (submitit)"
    ),
    slurm_opt: Optional[List[str]] = typer.Option(
        None, "--slurm-opt", help="A SLURM parameter for --slurm, KEY=VALUE (partition=gpu)"
    ),
):
    """The verdict protocol (the help text is _study_help's)."""

    overrides = list(ctx.args)
    _check_study_args(overrides, parallel, heartbeat)
    from runner import study as S  # Hydra, OmegaConf, optuna: lazy for a fast --help
    from runner.study import protocol as P

    try:
        if report_only:
            d = Path(out or (file if Path(file).is_dir() else f"studies/{S.load_name(file)}"))
            for f in P.report_only(d):
                typer.echo(f"wrote {f}")
            return
        spec = S.load(file, overrides)
        only = P.select_workloads(spec, workloads)
        if dry_run:
            typer.echo(P.dry_run(spec, only))
            return
        d = Path(out) if out else Path("studies") / spec.name
        if status:
            from runner.study.status import status_text  # OmegaConf, optuna: lazy for a fast --help

            typer.echo(status_text(spec, d, storage))
            return
        result = S.execute(
            spec,
            d,
            parallel,
            only=only,
            storage=storage,
            heartbeat=heartbeat,
            slurm=(slurm, tuple(slurm_opt or ())),
        )
    except ConfigError as e:
        _fail(str(e))
    except P.Interrupted:
        _fail("interrupted; re-run the same command to resume (completed runs are kept)", 3)
    except ImportError as e:
        _fail(
            f"tricks study needs the report and study extras ({e.name}); "
            f"pip install 'tricks[report,study]'"
        )
    _study_done(result, d, wandb)


def _check_study_args(overrides: list[str], parallel: int, heartbeat: int) -> None:
    bad = [a for a in overrides if a.startswith("-") or "=" not in a]
    if bad:
        _fail(
            f"{bad[0]}: not an option of tricks study nor a KEY=VALUE override (allowed: "
            f"--out, --parallel, --dry-run, --report-only, --workloads, --wandb, --storage, "
            f"--status, --heartbeat, --slurm, --slurm-opt, KEY=VALUE)"
        )
    if parallel < 0:
        _fail(f"--parallel: must be >= 0 (0: tricks worker processes do the runs), got {parallel}")
    if heartbeat < 1:
        _fail(f"--heartbeat: must be >= 1 second, got {heartbeat}")


def _study_done(result: dict, d, wandb: bool) -> None:
    """The headline, the failed runs, the W&B verdict run, where the study is."""
    from runner.study import protocol as P  # Hydra, OmegaConf, optuna: lazy for a fast --help

    for line in P.headline(result):
        typer.echo(line)
    failed = P.failed_runs(result)
    if failed:
        typer.echo(
            f"{len(failed)} run(s) failed (recorded as failed, worst score): "
            + "; ".join(failed[:5]),
            err=True,
        )
    if wandb:
        _study_wandb(result, d)
    typer.echo(f"study dir: {d} (study.json, report.md)")


@app.command()
def worker(
    storage: str = typer.Option(..., "--storage", help="The study's ledger (Optuna storage URL)"),
    study: Optional[str] = typer.Option(
        None, "--study", help="The study's name in the storage (default: the one running)"
    ),
    root: Optional[str] = typer.Option(
        None, "--root", help="The study dir as this machine sees it (default: the ledger's)"
    ),
    heartbeat: int = typer.Option(10, "--heartbeat", help="Seconds between heartbeats"),
    idle_exit: Optional[float] = typer.Option(
        None, "--idle-exit", help="Stop after this many seconds with nothing queued"
    ),
    local: Optional[int] = typer.Option(None, "--local", hidden=True),
    parent: Optional[int] = typer.Option(None, "--parent", hidden=True),
):
    """Pull the next run of a study's ledger and train it, until the study is done. Needs only
    the storage URL and the study's run root (a filesystem this machine sees)."""

    try:
        # deferred: optuna and torch load only when a worker starts (the CLI stays fast)
        from runner.study import ledger as L
        from runner.study.worker import serve

        name = study or L.running_study(storage)
        led = L.Ledger(storage, name, heartbeat=heartbeat, root=Path(root) if root else None)
        if not led.root.is_dir():
            raise ConfigError(
                "--root", f"{led.root} (the study dir) is not here", "the study dir's path here"
            )
        n = serve(led, local=local, parent=parent, idle=idle_exit)
    except ConfigError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    typer.echo(f"worker done: {n} run(s)")


def _study_wandb(result: dict, d) -> None:
    """One W&B "verdict" run of the study (runner.log.wandb.log_verdict), written under DIR."""

    from runner.log.wandb import log_verdict  # lazy: adds modules to --help; the study's need Hydra
    from runner.study.protocol import each_workload, headline

    rows = [
        [
            w or "",
            a,
            r["final"]["mean"],
            (r.get("diff") or {}).get("mean"),
            (r.get("diff") or {}).get("p_holm"),
            r["verdict"],
        ]
        for w, arms in each_workload(result)
        for a, r in arms.items()
    ]
    log_verdict(
        ["workload", "arm", result["metric"], "diff", "p_holm", "verdict"],
        rows,
        sorted(d.glob("*.png")),
        "; ".join(headline(result)),
        group=result["name"],
        dir=Path(d),
    )


def main():
    if os.environ.get("TRICKS_DEBUG", "") in ("", "0"):
        os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    else:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    app()


if __name__ == "__main__":
    main()
