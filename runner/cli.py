"""`tricks`: train, sweep, compare and list. Imports stay lazy so `tricks list` and `--help` are
instant; `train` hands its arguments to the @hydra.main entry unchanged."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

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


def precheck(args: list[str]) -> None:
    """Compose and validate before Hydra starts a run, so a bad override gives one line and
    creates or touches no run directory. Sweeps are checked value by value."""
    from runner.config import LIST_GROUPS, compose, options, validate
    from runner.errors import ConfigError

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    hydra_keys = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    overrides = [o for o in overrides if o not in hydra_keys]
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        raise ConfigError("", f"cannot parse overrides: {str(e).splitlines()[0]}")
    base, sweeps = [], []
    multirun = any(a in ("-m", "--multirun") for a in args)
    for o in parsed:
        if o.is_sweep_override() and not multirun:
            raise _single_run_sweep(o, LIST_GROUPS)
        if o.is_sweep_override():
            vals = _sweep_values(o)
            sweeps.append((o, vals))
            base.append(f"{o.get_key_element()}={vals[0]}" if vals else o.input_line)
        else:
            base.append(o.input_line)
    # group options first: the clearest message for a typo
    for o in parsed:
        key = o.key_or_group.lstrip("+~")
        if "." in key or "/" in key:
            continue
        try:
            available = options(key)
        except ConfigError:
            continue
        if o.is_sweep_override():
            values = _sweep_values(o)
        else:
            v = o.value()
            values = [str(x) for x in v] if isinstance(v, list) else [str(v)]
        for v in values:
            for name in v.strip("[]").split(",") if key in LIST_GROUPS else [v]:
                name = name.strip()
                if name and name not in available:
                    raise ConfigError(key, f"unknown option {name!r}", ", ".join(available))
    combos = [base]
    for o, vals in sweeps:
        i = parsed.index(o)
        for v in vals[1:]:
            c = list(base)
            c[i] = f"{o.get_key_element()}={v}"
            combos.append(c)
    for c in combos:
        try:
            cfg = compose(c)
        except Exception as e:
            raise ConfigError("", _hydra_msg(e, c))
        try:
            validate(cfg)
        except ConfigError:
            raise
        except Exception as e:  # e.g. `trainer=3` replaced a whole section
            raise ConfigError(
                "",
                f"invalid config ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:160]}); see `tricks train --cfg job`",
            )
        _precheck_resume(cfg, hydra_keys, multirun)


def _single_run_sweep(o, list_groups):
    """`reg=rdrop,fgm` without -m: Hydra's four-line "Ambiguous value"; ours names the fix."""
    from runner.errors import ConfigError

    key, vals = o.get_key_element().lstrip("+~"), _sweep_values(o)
    if key in list_groups:
        return ConfigError(
            key,
            f"{','.join(vals)} without brackets is a sweep; for a list write "
            f"'{key}=[{','.join(vals)}]' (quoted for the shell), or add -m to "
            "sweep over them",
        )
    return ConfigError(
        key,
        f"{','.join(vals)} is a sweep (a comma without brackets): add -m to run one job per value",
    )


def _sweep_values(o) -> list[str]:
    """The values of a sweep override; for an Optuna-style range (interval(a,b)), its two ends."""
    from hydra.core.override_parser.types import IntervalSweep

    v = o.value()
    if isinstance(v, IntervalSweep):
        return [str(v.start), str(v.end)]
    return [str(x) for x in o.sweep_string_iterator()]


def _hydra_value(hydra_keys: list[str], key: str) -> str | None:
    for o in hydra_keys:
        k, _, v = o.lstrip("+~").partition("=")
        if k == key:
            return v.strip("'\"")
    return None


def _precheck_resume(cfg, hydra_keys: list[str], multirun: bool) -> None:
    """resume: the checkpoint must exist, load, and fit this config, before Hydra writes its
    files into the run directory (a bad resume leaves that directory byte-identical)."""
    from pathlib import Path

    from runner.errors import ConfigError

    if cfg.resume is False:
        return
    if cfg.resume is True:
        if multirun:
            return  # each job resumes from its own dir (runner.main.sweep_job_plan)
        run_dir = _hydra_value(hydra_keys, "hydra.run.dir")
        if run_dir is None:
            raise ConfigError(
                "resume",
                "true needs the run to continue: add hydra.run.dir=<its directory>",
                "resume=true with "
                "hydra.run.dir=<an existing run dir>, or resume=<path to a last.pt>",
            )
        if "${" in run_dir:
            return  # interpolated: checked by the run itself
        path = Path(run_dir) / "checkpoints" / "last.pt"
    else:
        path = Path(str(cfg.resume))
    from runner import checkpoint
    from runner.config import to_container

    ckpt = checkpoint.load(path)
    checkpoint.check_compatible(ckpt["config"], to_container(cfg))


def _hydra_msg(e: Exception, overrides: list[str] | None = None) -> str:
    import re

    msg = " ".join(f"{e} {e.__cause__ or ''}".split())
    m = re.search(r"Could not override '([^']+)'", msg)
    if m and "is not in struct" in msg:
        key = m.group(1)
        unselected = _unselected_trick(key, overrides or [])
        if unselected:
            return unselected
        parent, _, _ = key.rpartition(".")
        allowed = ""
        try:  # the keys that do exist there, from the config without this override
            from omegaconf import DictConfig, OmegaConf

            from runner.config import compose

            rest = [o for o in (overrides or []) if o.lstrip("+~").partition("=")[0] != key]
            node = OmegaConf.select(compose(rest), parent) if parent else compose(rest)
            if isinstance(node, DictConfig):
                allowed = f" (allowed: {', '.join(str(k) for k in node)})"
        except Exception:
            pass
        return f"{key}: unknown key{allowed}; add a new key with +{key}=..."
    return msg


def _unselected_trick(key: str, overrides: list[str]) -> str | None:
    """`reg.rdrop.alpha=2` without rdrop in `reg`: the fix is to select it (not Hydra's `+key`)."""
    from runner.config import LIST_GROUPS, compose, options

    group, _, rest = key.partition(".")
    name = rest.partition(".")[0]
    if group not in LIST_GROUPS or not name or name not in options(group):
        return None
    selected = []
    try:
        rest_ov = [o for o in overrides if not o.lstrip("+~").startswith(f"{group}.")]
        selected = [str(k) for k in (compose(rest_ov).get(group) or {})]
    except Exception:
        pass
    this = next((o for o in overrides if o.lstrip("+~").partition("=")[0] == key), f"{key}=...")
    return (
        f"{key}: {name} is not selected in {group}; select it: "
        f"'{group}=[{','.join([*selected, name])}]' {this.lstrip('+')}"
    )


class _HydraRecord:
    """Hydra writes <run dir>/.hydra/ before the run validates what only building can check
    (dataset files, model ranges). For a single run into an existing directory, keep those files'
    bytes so bad input leaves the directory byte-identical."""

    def __init__(self, args: list[str]):
        from pathlib import Path

        self.files: dict | None = None
        if "-m" in args or "--multirun" in args:
            return
        d = _hydra_value([a for a in args if a.lstrip("+~").startswith("hydra.")], "hydra.run.dir")
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
    args = list(ctx.args)
    from runner.errors import ConfigError

    nproc, args = _pop_nproc(args)
    if not any(a in ("--cfg", "-c", "--info", "-i", "--hydra-help", "--help") for a in args):
        try:
            precheck(args)
        except ConfigError as e:
            _fail(str(e))
    if nproc > 1:
        raise typer.Exit(_launch_ddp(nproc, args))
    from runner import main as entry

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


def _pop_nproc(args: list[str]) -> tuple[int, list[str]]:
    """Take `--nproc N` / `--nproc=N` out of the Hydra arguments."""
    rest, nproc, i = [], 1, 0
    while i < len(args):
        a = args[i]
        if a == "--nproc" or a.startswith("--nproc="):
            val = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in a else 2
            if not val.isdigit() or int(val) < 1:
                _fail(f"--nproc: must be a positive integer, got {val!r}")
            nproc = int(val)
            continue
        rest.append(a)
        i += 1
    return nproc, rest


def _launch_ddp(nproc: int, args: list[str]) -> int:
    """One data-parallel run: torch.distributed.run starts `nproc` copies of runner.main, which
    join one process group (runner.dist). Returns torchrun's exit code."""
    import subprocess

    if any(a in ("-m", "--multirun") for a in args):
        _fail(
            "--nproc starts one data-parallel run, not a sweep; sweep DDP runs with "
            "hydra/launcher=slurm hydra.launcher.tasks_per_node=N (see docs/scale.md)"
        )
    if not any(a.startswith("hydra.run.dir=") for a in args):
        # every process must agree on the run directory, so resolve ${now:} once, here
        from hydra.core.utils import setup_globals
        from omegaconf import OmegaConf

        from runner import CONF_DIR

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
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from runner.config import TRICK_GROUPS, describe, groups, options, trick_target
    from runner.facts import summary

    all_groups = groups()
    if group is not None and group not in all_groups:
        _fail(f"unknown config group {group!r} (allowed: {', '.join(all_groups)})")
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("group")
    table.add_column("option")
    table.add_column("cost, place")  # a trick's passes per step and its `order` in the chains
    table.add_column("description")
    for g in [group] if group else all_groups:
        for i, o in enumerate(options(g)):
            facts = summary(trick_target(g, o)) if g in TRICK_GROUPS else ""
            table.add_row(g if i == 0 else "", o, escape(facts), describe(g, o))
    Console().print(table)


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
    try:
        from runner import compare as cmp
    except ImportError as e:
        _fail(f"tricks compare needs the report extras ({e.name}); pip install 'tricks[report]'")
    from runner.errors import ConfigError

    try:
        code = cmp.main(paths, metric=metric, baseline=baseline, out=out, wandb=wandb)
    except ConfigError as e:
        _fail(str(e))
    raise typer.Exit(code or 0)


def _study_help() -> str:
    """`tricks study --help`: the protocol in brief, and the study files of experiments/."""
    from pathlib import Path

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
    root = Path(__file__).resolve().parent.parent / "experiments"
    found = []
    for p in sorted(root.glob("*/study.yaml")):
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
    from pathlib import Path

    from runner.errors import ConfigError

    overrides = list(ctx.args)
    _check_study_args(overrides, parallel, heartbeat)
    from runner import study as S
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
            from runner.study.status import status_text

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
    from runner.study import protocol as P

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
    from pathlib import Path

    from runner.errors import ConfigError

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
    from pathlib import Path

    from runner.log.wandb import log_verdict
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
