"""Reading runs: run directories (config.yaml, .hydra/, summary.json, metrics.jsonl), sweep
directories found recursively, and W&B runs (`wandb:ENTITY/PROJECT[/GROUP]`), as `Run`s; and
grouping them by the config keys that tell them apart. Used by `tricks compare` and the study."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.config import GROUPS, TRICK_GROUPS, choices_of, flatten
from runner.errors import ConfigError
from runner.log import wandb as wb
from runner.log import write_json_atomic

# Keys that cannot change a result: never a reason to split runs into groups.
IGNORED = (
    "seed",
    "resume",
    "run_dir",
    "trainer.progress",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.eval_batch_size",
    "trainer.keep_checkpoints",
    "trainer.data_on_device",
)
# model.train_with: a model's advice; the values it set show as optimizer.lr, schedule.warmup_steps
IGNORED_PREFIXES = ("logger", "hydra", "_wandb", "choices.logger", "model.train_with")

# -- runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    path: str
    config: dict  # flattened
    choices: dict  # group -> option
    summary: dict
    status: str  # completed | failed | interrupted | unfinished
    error: str | None = None
    load_rows: Callable[[], list] | None = None
    _rows: list | None = field(default=None, repr=False)

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def rows(self) -> list:
        if self._rows is None:
            try:
                self._rows = self.load_rows() if self.load_rows else []
            except Exception:
                self._rows = []
        return self._rows

    def value(self, metric: str):
        """The run's figure for `metric`: summary.json first, else its last logged value."""
        v = self.summary.get(metric)
        if v is None:
            for r in reversed(self.rows):
                if r.get(metric) is not None:
                    v = r[metric]
                    break
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return float(v)


def _no_trick(d: dict) -> bool:
    return all(d.get(g, "none") in ("none", "[]") for g in TRICK_GROUPS)


def natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def is_run_dir(d: Path) -> bool:
    return (
        (d / "summary.json").is_file()
        or (d / "config.yaml").is_file()
        or (d / "metrics.jsonl").is_file()
    )


def read_rows(path: Path) -> list:
    """A metrics.jsonl file's rows (none when it is absent; a line cut by a kill skipped)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return rows


def load_run_dir(d: Path) -> Run:
    cfg_file = d / "config.yaml"
    if not cfg_file.is_file():
        cfg_file = d / ".hydra" / "config.yaml"
    config = {}
    if cfg_file.is_file():
        try:
            config = yaml.safe_load(cfg_file.read_text()) or {}
        except yaml.YAMLError:
            config = {}
    hydra_choices = {}
    hf = d / ".hydra" / "hydra.yaml"
    if hf.is_file():
        try:
            h = yaml.safe_load(hf.read_text()) or {}
            hydra_choices = (h.get("hydra", {}).get("runtime", {}) or {}).get("choices") or {}
        except yaml.YAMLError:
            pass
    summary, status, error = {}, "unfinished", "no summary.json (still running, or killed)"
    if (d / "summary.json").is_file():
        try:
            summary = json.loads((d / "summary.json").read_text())
            status = summary.get("status") or "unfinished"
            error = summary.get("error")
            if status == "running":
                status = "unfinished"
        except json.JSONDecodeError:
            status, error = "unfinished", "summary.json is not valid JSON"
    return Run(
        path=str(d),
        config=flatten(config) if isinstance(config, dict) else {},
        choices=choices_of(config if isinstance(config, dict) else {}, hydra_choices),
        summary=summary,
        status=status,
        error=error,
        load_rows=lambda p=d / "metrics.jsonl": read_rows(p),
    )


def find_run_dirs(root: Path) -> list[Path]:
    if is_run_dir(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        p = Path(dirpath)
        dirnames[:] = sorted(
            (
                n
                for n in dirnames
                if not n.startswith(".") and n not in ("checkpoints", "wandb", "tensorboard")
            ),
            key=natural_key,
        )
        if p != root and is_run_dir(p):
            found.append(p)
            dirnames[:] = []
    return sorted(found, key=lambda p: natural_key(str(p)))


def load_wandb(spec: str) -> list[Run]:
    """`wandb:ENTITY/PROJECT[/GROUP]` through the W&B public API (needs a login and a network)."""

    path = spec[len("wandb:") :].strip("/")
    parts = [p for p in path.split("/") if p]
    if len(parts) not in (2, 3):
        raise ConfigError(spec, "expected wandb:ENTITY/PROJECT or wandb:ENTITY/PROJECT/GROUP")
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled"):
        raise ConfigError(
            spec,
            f"WANDB_MODE={os.environ['WANDB_MODE']}: reading runs from W&B "
            "needs online mode; compare the local run directories instead",
        )
    if not wb.has_api_key():
        raise ConfigError(
            spec,
            "not logged in to W&B (run `wandb login` or set WANDB_API_KEY); "
            "or compare the local run directories instead",
        )
    if not wb.reachable(timeout=5.0):
        raise ConfigError(
            spec,
            f"cannot reach W&B at {wb.base_url()} (offline?); compare the "
            "local run directories instead",
        )
    import wandb  # an optional dependency, and slow to import: only for wandb: sources

    try:
        api = wandb.Api(timeout=30)
        filters = {"group": parts[2]} if len(parts) == 3 else None
        remote = list(api.runs(f"{parts[0]}/{parts[1]}", filters=filters))
    except Exception as e:
        raise ConfigError(
            spec, f"W&B API error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )
    runs = []
    for r in remote:
        config = {k: v for k, v in dict(r.config).items() if not k.startswith("_")}
        config = flatten(config)
        choices = {
            k[len("choices.") :]: str(v) for k, v in config.items() if k.startswith("choices.")
        }
        config = {k: v for k, v in config.items() if not k.startswith("choices.")}
        raw = getattr(r.summary, "_json_dict", None)
        raw = raw if isinstance(raw, dict) else dict(r.summary)
        summary = {k: v for k, v in raw.items() if not k.startswith("_")}
        state = getattr(r, "state", "")
        status = summary.get("status") or {
            "finished": "completed",
            "crashed": "failed",
            "failed": "failed",
            "killed": "interrupted",
        }.get(state, "unfinished")
        if state == "running":
            status = "unfinished"

        def rows(r=r):
            return [
                {k: v for k, v in dict(h).items() if not k.startswith("_")}
                for h in r.scan_history()
            ]

        runs.append(
            Run(
                path=f"wandb:{parts[0]}/{parts[1]}/{r.id}",
                config=config,
                choices=choices or {},
                summary=summary,
                status=status,
                error=summary.get("error"),
                load_rows=rows,
            )
        )
    if not runs:
        raise ConfigError(spec, "no runs found")
    return runs


def load_runs(paths: list[str]) -> list[Run]:
    runs, seen = [], set()
    for p in paths:
        if str(p).startswith("wandb:"):
            runs.extend(load_wandb(str(p)))
            continue
        root = Path(p)
        if not root.exists():
            raise ConfigError(str(p), "no such file or directory")
        if not root.is_dir():
            raise ConfigError(str(p), "not a directory (give run or sweep directories)")
        dirs = find_run_dirs(root)
        if not dirs:
            raise ConfigError(
                str(p),
                "no run directories found (a run directory holds "
                "summary.json, config.yaml or metrics.jsonl)",
            )
        for d in dirs:
            key = d.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(load_run_dir(d))
    return runs


# -- grouping --------------------------------------------------------------------------------


def _ignored(key: str) -> bool:
    return key in IGNORED or any(key == p or key.startswith(p + ".") for p in IGNORED_PREFIXES)


def _fmt_value(v) -> str:
    if isinstance(v, list):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def descriptor(run: Run) -> dict:
    """Everything that may tell runs apart: the group options and the flattened config."""
    d = {k: _fmt_value(v) for k, v in run.choices.items() if k != "logger"}
    d.update({k: _fmt_value(v) for k, v in run.config.items() if not _ignored(k)})
    return d


def differing_keys(runs: list[Run]) -> list[str]:
    """Keys whose value differs across runs. A config key under a group whose option differs
    (e.g. optimizer.betas when optimizer=adamw,sgd) is left out when the option explains it:
    constant among the runs that share that option."""
    if len(runs) < 2:
        return []
    descs = [descriptor(r) for r in runs]
    keys = sorted(set().union(*descs))
    diff = [k for k in keys if len({d.get(k, "<absent>") for d in descs}) > 1]
    group_keys = set().union(*(r.choices for r in runs))
    chosen = [k for k in diff if k in group_keys]
    keep = []
    for k in diff:
        if k in chosen:
            continue
        g = k.split(".", 1)[0]
        if g in chosen:
            by_option = {}
            for d in descs:
                by_option.setdefault(d.get(g), set()).add(d.get(k, "<absent>"))
            if all(len(v) == 1 for v in by_option.values()):
                continue  # explained by the group's option
        keep.append(k)
    order = {g: i for i, g in enumerate(GROUPS)}
    chosen.sort(key=lambda k: (order.get(k, len(GROUPS)), k))
    return chosen + keep


@dataclass
class Group:
    label: str
    key: tuple
    runs: list  # completed runs with a value
    values: list
    stats: dict = field(default_factory=dict)


def group_runs(runs: list[Run], keys: list[str]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        d = descriptor(r)
        groups.setdefault(tuple((k, d.get(k, "<absent>")) for k in keys), []).append(r)
    return groups


def label_of(key: tuple) -> str:
    return " ".join(f"{k}={v}" for k, v in key) or "all runs"


def val_rows(values) -> int | None:
    """The size of the split behind accuracies read off the values themselves: the smallest n
    below 100 of which every value is a whole multiple (k/n). None when fewer than 5 distinct
    values (too few to tell) or none fits (a split of 100 rows or more). What a small val split
    costs: one row moves val/acc by 1/n, so ties on it are common and a row decides them."""
    vals = {round(float(v), 9) for v in values if isinstance(v, (int, float)) and math.isfinite(v)}
    if len(vals) < 5:
        return None
    for n in range(2, 100):
        if all(abs(v * n - round(v * n)) < 1e-4 for v in vals):
            return n
    return None


def val_rows_note(n: int | None, key: str = "val/acc") -> str | None:
    """The report line for a small val split (val_rows), None for none."""
    if n is None:
        return None
    return (
        f"Small val split: {key} moves in steps of 1/{n} (about {n} rows; one row = "
        f"{100 / n:.1f} points), so ties on it are likely and a single row can decide the "
        "selection; more val rows (dataset.val_size / val_fraction) make it finer."
    )


def status_of(run_dir: Path) -> str | None:
    """A run dir's summary.json status (completed | failed | interrupted), None without one."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def write_failed(run_dir: Path, error: str) -> None:
    """Record a run that could not run or finish (its worker died past its retries)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": error})
