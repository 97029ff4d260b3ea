"""Weights & Biases sink (`logger=wandb`): the same rows as metrics.jsonl, plotted against `step`.

- The full resolved config, flattened (`optimizer.lr`, `trainer.batch_size`, ...), plus
  `choices.<group>` (the selected option of each config group), so the dashboard can group and
  filter by any key; tags: model, optimizer, each reg and derived trick, clip, schedule,
  dataset, loss (`tags_of`).
- `log_verdict`: `tricks compare --wandb` puts its verdict table, plots and headline into one
  "verdict" run of the sweep's project and group.
- `mode: auto` (default): online when an API key is configured and the service answers a short
  probe; otherwise offline, with one line telling how to `wandb sync` later. Online init has a
  short timeout (`init_timeout`) and falls back to offline: a run never hangs on W&B.
- Multirun: each job is its own W&B run; `group` defaults to the sweep directory, the run name to
  the job's overrides. Under multi-process training only rank 0 logs.
- Errors are isolated by runner.log.Logger: a W&B failure mid-run switches this sink off with one
  warning; training and the local files go on.
- `resume=true` continues the same W&B run (its id is kept in `<run dir>/wandb-run-id`).
"""

from __future__ import annotations

import os
import secrets
import string
import sys
from pathlib import Path

import yaml

from runner.config import _option_from_conf, choices_of, flatten
from runner.errors import check, positive
from runner.log import Sink

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_BASE_URL = "https://api.wandb.ai"
ID_FILE = "wandb-run-id"


def is_main_process() -> bool:
    """Rank 0 (or not distributed). Uses torch.distributed when initialised, else RANK."""
    try:
        # torch: compare and runs import this module without torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except Exception:
        pass
    return os.environ.get("RANK", "0").strip() in ("", "0")


def new_run_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def has_api_key(url: str | None = None) -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    url = url or base_url()
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth  # optional extra (wandb)

        return bool(read_netrc_auth(host=url))
    except Exception:
        pass
    try:  # the same file, read by the standard library (if wandb's helper moved)
        import netrc
        from urllib.parse import urlparse

        path = os.environ.get("NETRC", str(Path.home() / ".netrc"))
        auth = netrc.netrc(path).authenticators(urlparse(url).hostname or "")
        return bool(auth and auth[2])
    except Exception:
        return False


def reachable(url: str | None = None, timeout: float = 3.0) -> bool:
    """Does the W&B server answer within `timeout` seconds? Any HTTP answer counts."""
    import urllib.error  # slow (ssl), only to probe the server
    import urllib.request

    url = url or base_url()
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        return True
    except urllib.error.HTTPError:
        return True  # the server answered (e.g. 404 on /): it is there
    except Exception:
        return False


def resolve_mode(mode: str, probe_timeout: float = 3.0) -> tuple[str, str | None]:
    """(mode to use, why offline) for the configured mode. WANDB_MODE in the environment wins
    over `auto` (the user said so explicitly)."""
    if mode != "auto":
        return mode, None
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("offline", "dryrun"):
        return "offline", None
    if env in ("disabled", "online"):
        return env, None
    if not has_api_key():
        return "offline", "not logged in"
    if not reachable(timeout=probe_timeout):
        return "offline", f"{base_url()} did not answer within {probe_timeout:g} s"
    return "online", None


def _hydra_config():
    try:
        from hydra.core.hydra_config import HydraConfig  # Hydra: compare, runs import us

        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:
        return None


def _hydra_choices(run_dir: Path) -> dict:
    hc = _hydra_config()
    if hc is not None:
        return {k: v for k, v in dict(hc.runtime.choices).items() if not k.startswith("hydra/")}
    f = run_dir / ".hydra" / "hydra.yaml"
    if f.exists():
        try:
            ch = (yaml.safe_load(f.read_text()) or {}).get("hydra", {}).get("runtime", {})
            return {
                k: v
                for k, v in (ch.get("choices") or {}).items()
                if not str(k).startswith("hydra/")
            }
        except Exception:
            return {}
    return {}


def _safe(s: str) -> str:
    return "-".join(p for p in str(s).replace("\\", "/").split("/") if p not in ("", "."))


def tags_of(choices: dict, config: dict, extra=()) -> list[str]:
    """One tag per group option: model, optimizer, each reg and derived trick, clip (unless
    none), schedule, dataset, loss (when the config has that group), then the user's own."""
    lists = [t for g in ("reg", "derived") for t in str(choices.get(g, "")).strip("[]").split(",")]
    loss = choices.get("loss")
    if loss is None and isinstance(config.get("loss"), dict) and config["loss"].get("_target_"):
        loss = _option_from_conf("loss", config["loss"])
    tags = [
        choices.get("model"),
        choices.get("optimizer"),
        *lists,
        choices.get("clip") if choices.get("clip") not in (None, "none") else None,
        choices.get("schedule"),
        choices.get("dataset"),
        loss,
        *extra,
    ]
    seen, clean = set(), []
    for t in tags:
        t = str(t).strip() if t is not None else ""
        if t and t not in ("none", "[]") and t not in seen:
            seen.add(t)
            clean.append(t[:64])
    return clean


def _init(mode: str, init_timeout: float, **kwargs):
    """wandb.init with a bounded wait; an online attempt that fails (mode auto) goes offline.
    Returns (run, mode used, why offline or None)."""
    import wandb  # optional extra (wandb)

    settings = wandb.Settings(
        init_timeout=float(init_timeout), silent=True, reinit="finish_previous"
    )
    try:
        return wandb.init(mode=mode, settings=settings, **kwargs), mode, None
    except Exception as e:
        if mode != "online":
            raise
        msg = str(e).splitlines()[0] if str(e).strip() else f"no answer in {init_timeout:g} s"
        return (
            wandb.init(mode="offline", settings=settings, **{**kwargs, "id": new_run_id()}),
            "offline",
            f"online init failed ({type(e).__name__}: {msg})",
        )


def log_verdict(
    headers: list[str],
    rows: list[list],
    images: list[Path],
    headline: str,
    project: str | None = None,
    group: str | None = None,
    name: str = "verdict",
    mode: str = "auto",
    dir: Path | None = None,
) -> Path | None:
    """One W&B run (job_type "verdict") holding the verdict table as a wandb.Table (`verdict`),
    the plots as images (`plots/<file stem>`) and the headline in the run summary, in the
    sweep's project and group. Returns the local run dir (None when mode resolves to
    disabled). Offline (not logged in, unreachable) it says how to `wandb sync` it."""
    import wandb  # optional extra (wandb)

    check(mode in MODES, "--wandb mode", f"got {mode!r}", ", ".join(MODES))
    if os.environ.get("WANDB_MODE", None) == "":
        del os.environ["WANDB_MODE"]
    mode, why = resolve_mode(mode)
    if mode == "disabled":
        return None
    dir = Path(dir) if dir else Path.cwd()
    dir.mkdir(parents=True, exist_ok=True)
    run, mode, failed = _init(
        mode,
        20.0,
        project=project or "tricks",
        group=group,
        name=name,
        job_type="verdict",
        dir=str(dir),
        id=new_run_id(),
        config={"headline": headline},
    )
    why = why or failed
    table = wandb.Table(
        columns=[str(h) for h in headers],
        data=[["" if c is None else str(c) for c in r] for r in rows],
    )
    run.log({"verdict": table, **{f"plots/{Path(p).stem}": wandb.Image(str(p)) for p in images}})
    run.summary["headline"] = headline
    run.summary["n_groups"] = len(rows)
    local = Path(run.dir).parent
    run.finish()
    if mode == "offline":
        print(
            f"wandb: verdict saved offline{f' ({why})' if why else ''}; upload with "
            f"`wandb sync {local}`",
            file=sys.stderr,
        )
    return local


class WandbSink(Sink):
    """Log to W&B; see the module docstring. Keys are those of conf/logger/wandb.yaml."""

    def __init__(
        self,
        project: str = "tricks",
        entity: str | None = None,
        group: str | None = None,
        job_type: str = "train",
        name: str | None = None,
        tags: list | None = None,
        notes: str | None = None,
        mode: str = "auto",
        dir: str | None = None,
        init_timeout: float = 20.0,
        probe_timeout: float = 3.0,
    ):
        check(mode in MODES, "logger.mode", f"got {mode!r}", ", ".join(MODES))
        positive(init_timeout, "logger.init_timeout")
        positive(probe_timeout, "logger.probe_timeout")
        check(
            isinstance(project, str) and bool(project),
            "logger.project",
            "must be a non-empty string",
        )
        self.project, self.entity, self.group, self.job_type = project, entity, group, job_type
        self.name, self.tags, self.notes, self.mode = name, list(tags or []), notes, mode
        self.dir, self.init_timeout, self.probe_timeout = dir, init_timeout, probe_timeout
        self.run = None
        self.offline_reason = None
        self.offline_dir = None

    # -- what the run is called ----------------------------------------------------------------
    def describe(self, run_dir: Path, config: dict) -> dict:
        """The init arguments that come from the run: group, name, tags, flattened config."""

        hc = _hydra_config()
        choices = choices_of(config, _hydra_choices(run_dir))
        group, name = self.group, self.name
        multirun = False
        if hc is not None:
            try:
                from hydra.types import RunMode  # Hydra: compare, runs import us

                multirun = hc.mode == RunMode.MULTIRUN
            except Exception:
                multirun = False
        if multirun:
            group = group or _safe(hc.sweep.dir)
            if not name:
                name = (hc.job.override_dirname or "")[:120] or f"job-{hc.job.num}"
        flat = flatten(config)
        flat.update({f"choices.{k}": v for k, v in choices.items()})
        flat["run_dir"] = str(run_dir)
        return {
            "group": group,
            "name": name,
            "tags": tags_of(choices, config, self.tags),
            "config": flat,
        }

    # -- Sink ----------------------------------------------------------------------------------
    def start(self, run_dir, config):
        if not is_main_process():
            return
        import wandb  # optional extra (wandb)

        if os.environ.get("WANDB_MODE", None) == "":
            del os.environ["WANDB_MODE"]  # an empty value fails wandb's settings validation
        run_dir = Path(run_dir)
        d = self.describe(run_dir, config)
        mode, why = resolve_mode(self.mode, self.probe_timeout)
        if mode == "disabled":
            return
        wdir = Path(self.dir) if self.dir else run_dir
        wdir.mkdir(parents=True, exist_ok=True)
        id_file = run_dir / ID_FILE
        resume = None
        if config.get("resume") and id_file.exists():
            run_id, resume = id_file.read_text().strip(), "allow"
        else:
            run_id = new_run_id()
        kwargs = dict(
            project=self.project,
            entity=self.entity,
            group=d["group"],
            job_type=self.job_type,
            name=d["name"],
            tags=d["tags"],
            notes=self.notes,
            config=d["config"],
            dir=str(wdir),
            id=run_id,
            resume=resume,
        )
        try:
            self.run = wandb.init(mode=mode, settings=self._settings(), **kwargs)
        except Exception as e:
            if mode != "online" or self.mode != "auto":
                raise
            msg = str(e).splitlines()[0] if str(e).strip() else ""
            if not msg or msg == "<no message>":
                msg = f"no answer within init_timeout={self.init_timeout:g} s"
            why = f"online init failed ({type(e).__name__}: {msg})"
            mode = "offline"
            # the failed online attempt may still hold the id in wandb's service: take a new one
            kwargs.update(id=new_run_id(), resume=None)
            self.run = wandb.init(mode=mode, settings=self._settings(), **kwargs)
        id_file.write_text(self.run.id + "\n")
        self.offline_reason = why
        self.offline_dir = Path(self.run.dir).parent if mode == "offline" else None
        if why:
            print(
                f"wandb: offline ({why}); upload later with `wandb sync {self.offline_dir}`",
                file=sys.stderr,
            )
        self.run.define_metric("step")
        self.run.define_metric("epoch", step_metric="step")
        self.run.define_metric("*", step_metric="step")

    def _settings(self):
        import wandb  # optional extra (wandb)

        # finish_previous: a run left open (a failed job of the sweep) never swallows the next one
        return wandb.Settings(
            init_timeout=float(self.init_timeout), silent=True, reinit="finish_previous"
        )

    def log(self, row):
        if self.run is not None:
            try:
                self.run.log(dict(row))
            except Exception:
                self._abandon()  # the Logger switches this sink off; close the W&B run first
                raise

    def _abandon(self):
        run, self.run = self.run, None
        try:
            run.finish(exit_code=1)
        except Exception:
            pass

    def finish(self, summary):
        if self.run is None:
            return
        run = self.run
        try:
            run.summary.update({k: v for k, v in summary.items() if v is not None})
        except Exception:
            self._abandon()
            raise
        self.run = None
        run.finish(exit_code=0 if summary.get("status") == "completed" else 1)
        if self.offline_dir is not None and not self.offline_reason:
            print(
                f"wandb: offline run saved; upload with `wandb sync {self.offline_dir}`",
                file=sys.stderr,
            )
