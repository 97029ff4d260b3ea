"""The checks of a `tricks train` command line before Hydra starts a run (`precheck`): overrides
parsed, group options known, every sweep point composed and validated, a resume's checkpoint
fitting its config. One error line (ConfigError) for the first thing wrong, with the fix.
Used by the CLI, the study (each arm's overrides) and the W&B sweep writer; it sits below all
three so none of them imports the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import DictConfig, OmegaConf

from runner.config import LIST_GROUPS, compose, options, to_container, validate
from runner.errors import ConfigError, closest


def precheck(args: list[str]) -> None:
    """Compose and validate before Hydra starts a run, so a bad override gives one line and
    creates or touches no run directory. Sweeps are checked value by value."""
    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    hydra_keys = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    overrides = [o for o in overrides if o not in hydra_keys]
    try:
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
                    raise ConfigError(
                        key,
                        f"unknown option {name!r}{closest(name, available)}",
                        ", ".join(available),
                    )
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
    v = o.value()
    if isinstance(v, IntervalSweep):
        return [str(v.start), str(v.end)]
    return [str(x) for x in o.sweep_string_iterator()]


def hydra_value(hydra_keys: list[str], key: str) -> str | None:
    for o in hydra_keys:
        k, _, v = o.lstrip("+~").partition("=")
        if k == key:
            return v.strip("'\"")
    return None


def _precheck_resume(cfg, hydra_keys: list[str], multirun: bool) -> None:
    """resume: the checkpoint must exist, load, and fit this config, before Hydra writes its
    files into the run directory (a bad resume leaves that directory byte-identical)."""
    if cfg.resume is False:
        return
    if cfg.resume is True:
        if multirun:
            return  # each job resumes from its own dir (runner.main.sweep_job_plan)
        run_dir = hydra_value(hydra_keys, "hydra.run.dir")
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
    # torch (through checkpoint) only when there is a checkpoint to read: the W&B sweep writer
    # and the study's checks stay free of it
    from runner import checkpoint

    ckpt = checkpoint.load(path)
    checkpoint.check_compatible(ckpt["config"], to_container(cfg))


def _hydra_msg(e: Exception, overrides: list[str] | None = None) -> str:
    msg = " ".join(f"{e} {e.__cause__ or ''}".split())
    m = re.search(r"Could not override '([^']+)'", msg)
    if m and "is not in struct" in msg:
        return _unknown_key(m.group(1), overrides or [])
    return msg


def _unknown_key(key: str, overrides: list[str]) -> str:
    """A key the config does not have: a trick's key whose trick is not selected gets the fix
    that selects it; otherwise the keys that do exist there with the closest one, or, for a key
    that lives elsewhere (`lr` -> `optimizer.lr`), where it lives."""
    unselected = _unselected_trick(key, overrides)
    if unselected:
        return unselected
    parent, _, leaf = key.rpartition(".")
    keys, paths = [], []
    try:  # the config without this override
        cfg = compose([o for o in overrides if o.lstrip("+~").partition("=")[0] != key])
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = [str(k) for k in node if k != "_target_"] if isinstance(node, DictConfig) else []
        paths = _paths(OmegaConf.to_container(cfg, resolve=False))
    except Exception:
        pass
    hint = closest(leaf, keys)
    if not hint:  # the same name elsewhere (`lr`, `trainer.lr`); a fuzzy match across groups
        # would mostly be noise (trainer.nope -> trainer.compile)
        there = [p for p in paths if p.rpartition(".")[2] == leaf and p != key]
        hint = f"; did you mean {' or '.join(there[:3])}?" if there else ""
    allowed = f" (allowed: {', '.join(keys)})" if keys else ""
    # Hydra's `+key=` adds a key no code reads: offered only when no existing key is near
    add = "" if hint else f"; add a new key with +{key}=..."
    return f"{key}: unknown key{hint}{allowed}{add}"


def _paths(node, prefix: str = "") -> list[str]:
    """Every key of a nested config as a dotted path (leaves and sections)."""
    if not isinstance(node, dict):
        return []
    out = []
    for k, v in node.items():
        p = f"{prefix}{k}"
        out += [p, *_paths(v, p + ".")]
    return out


def _unselected_trick(key: str, overrides: list[str]) -> str | None:
    """`reg.rdrop.alpha=2` without rdrop in `reg`: the fix is to select it (not Hydra's `+key`)."""
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
    if name in selected:
        return None  # selected: the key under it is misspelt (_unknown_key lists its keys)
    this = next((o for o in overrides if o.lstrip("+~").partition("=")[0] == key), f"{key}=...")
    return (
        f"{key}: {name} is not selected in {group}; select it: "
        f"'{group}=[{','.join([*selected, name])}]' {this.lstrip('+')}"
    )
