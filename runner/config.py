"""Config registry, composition and validation (no torch import: `tricks list` stays instant).

The registry is the folder: every `conf/<group>/<option>.yaml` is an option, and its first comment
line is the one-line help that `tricks list` prints.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner import CONF_DIR
from runner.errors import ConfigError, check, closest, in_range, positive

# Config groups that take a list of options (reg=[rdrop,flooding]) rather than one.
LIST_GROUPS = ("reg", "derived")
# The groups whose options are tricks (runner.hooks.Trick subclasses), in build order
TRICK_GROUPS = ("reg", "derived", "clip")
# The groups that describe a run, in display order (`tricks compare`, W&B tags and config)
GROUPS = ("model", "optimizer", "reg", "derived", "dataset", "clip", "schedule", "loss")
_LIST_EXAMPLES = {"reg": "reg=[rdrop,flooding]", "derived": "derived=[ema,lookahead]"}


def groups(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra")


def options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    d = conf_dir / group
    if not d.is_dir():
        known = groups(conf_dir)
        raise ConfigError(group, "unknown config group" + closest(group, known), ", ".join(known))
    return sorted(p.stem for p in d.glob("*.yaml"))


def option_override(group: str, option: str) -> str:
    """The override that selects `option`: `reg=[rdrop]` for a list group, else `clip=norm`."""
    return f"{group}=[{option}]" if group in LIST_GROUPS else f"{group}={option}"


def trick_target(group: str, option: str, conf_dir: Path = CONF_DIR) -> str | None:
    """The `_target_` of a trick option's config (None for e.g. clip=none)."""
    node = yaml.safe_load((conf_dir / group / f"{option}.yaml").read_text()) or {}
    if group in LIST_GROUPS:
        node = node.get(option) or {}
    return node.get("_target_")


def describe(group: str, option: str, conf_dir: Path = CONF_DIR) -> str:
    """The option's one-line help: the first comment line of its file."""
    for line in (conf_dir / group / f"{option}.yaml").read_text().splitlines():
        s = line.strip()
        if s.startswith("#") and not s.startswith("# @"):
            return s.lstrip("#").strip()
        if s and not s.startswith("#"):
            break
    return ""


def compose(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """Compose the config as `tricks train` would, without running anything."""
    # Hydra: lazy, so `tricks list` (which reads this module) and --help start fast
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hcompose(
                config_name=config_name, overrides=list(overrides or []), return_hydra_config=False
            )
    finally:
        GlobalHydra.instance().clear()


_TRAINER_CHOICES = {
    "device": None,  # checked below: auto | cpu | cuda | cuda:N
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "on_nan": ("stop", "skip"),
    "keep_checkpoints": ("all", "best", "none"),
    "select": ("auto", "val/acc", "val/f1", "val/f1_macro"),
    "eval_test": ("every", "best"),
}


def validate(cfg: DictConfig) -> None:
    """Reject bad values with one ConfigError line, before anything is built or written."""
    t = cfg.trainer
    if t.max_steps is None:
        positive(t.epochs, "trainer.epochs", integer=True)
    else:
        positive(t.max_steps, "trainer.max_steps", integer=True)
    for key in ("batch_size", "accum_steps", "log_every", "eval_batch_size"):
        positive(t[key], f"trainer.{key}", integer=True)
    for key in ("eval_every", "checkpoint_every"):
        if t[key] is not None:
            positive(t[key], f"trainer.{key}", integer=True)
    positive(t.get("stream_offset", 0), "trainer.stream_offset", integer=True, allow_zero=True)
    if t.get("patience") is not None:
        positive(t.patience, "trainer.patience", integer=True, allow_zero=True)
    if "min_delta" in t:
        positive(t.min_delta, "trainer.min_delta", allow_zero=True)
    dev = str(t.device)
    check(
        dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
        "trainer.device",
        f"unknown device {dev!r}",
        "auto, cpu, cuda, cuda:N",
    )
    for key, allowed in _TRAINER_CHOICES.items():
        if allowed:
            check(t[key] in allowed, f"trainer.{key}", f"got {t[key]!r}", ", ".join(allowed))
    for key in ("compile", "deterministic", "grad_checkpointing"):
        check(isinstance(t[key], bool), f"trainer.{key}", f"must be true or false, got {t[key]!r}")
    check(
        t.progress in ("auto", True, False),
        "trainer.progress",
        f"got {t.progress!r}",
        "auto, true, false",
    )
    check(
        t.data_on_device in ("auto", True, False),
        "trainer.data_on_device",
        f"got {t.data_on_device!r}",
        "auto, true, false",
    )
    check(
        isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool),
        "seed",
        f"must be an integer, got {cfg.seed!r}",
    )
    check(
        cfg.resume is False or cfg.resume is True or isinstance(cfg.resume, str),
        "resume",
        f"got {cfg.resume!r}",
        "true, false, or a checkpoint path",
    )
    opt = cfg.optimizer
    positive(opt.lr, "optimizer.lr")
    if "weight_decay" in opt:
        positive(opt.weight_decay, "optimizer.weight_decay", allow_zero=True)
    for key in ("momentum", "beta"):
        if key in opt:
            in_range(opt[key], f"optimizer.{key}", 0.0, 1.0, hi_open=True)
    if "betas" in opt:
        check(
            isinstance(opt.betas, ListConfig) and len(opt.betas) == 2,
            "optimizer.betas",
            f"must be two numbers [beta1, beta2], got {opt.betas!r}",
        )
        for i, b in enumerate(opt.betas):
            in_range(b, f"optimizer.betas[{i}]", 0.0, 1.0, hi_open=True)
    for group in LIST_GROUPS:
        node = cfg.get(group)
        check(
            node is None or isinstance(node, DictConfig),
            group,
            f"must be a list of options, e.g. {_LIST_EXAMPLES.get(group, group + '=[a,b]')}",
        )


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: what dashboards and `tricks compare` group by."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, (dict, DictConfig)):
            out.update(flatten(dict(v), key + "."))
        elif isinstance(v, ListConfig):
            out[key] = list(v)
        else:
            out[key] = v
    return out


@functools.cache
def root_defaults(conf_dir: Path = CONF_DIR) -> dict:
    """conf/train.yaml's own keys, flattened ({'trainer.eval_test': 'every', ...}; not the
    groups' options, not hydra's). Read once per process; not to be mutated."""
    node = OmegaConf.to_container(OmegaConf.load(conf_dir / "train.yaml"))
    return flatten({k: v for k, v in node.items() if k not in ("defaults", "hydra")})


def added_later(key: str, old: dict, new: dict) -> bool:
    """A key of the root config the earlier run's (flattened) config `old` lacks and the new
    config `new` leaves at its default: a key a later version added, at the behaviour the
    earlier code had (new keys are opt-in). Re-running or resuming a run written before
    trainer.eval_test existed is then the same config; any other missing key still differs."""
    if key in old or key not in new:
        return False
    defaults = root_defaults()
    return key in defaults and new[key] == defaults[key]


def first_difference(old: dict, new: dict, free: tuple = ()) -> tuple | None:
    """(key, old value, new value) of the first key where two configs differ, None when equal
    apart from `free` keys (and their subkeys) and keys added later at their default: what a
    re-run sweep job (runner.main) and a resumed checkpoint (runner.checkpoint) compare."""
    a, b = flatten(old), flatten(new)
    for key in sorted(set(a) | set(b)):
        if any(key == k or key.startswith(k + ".") for k in free) or added_later(key, a, b):
            continue
        if key == "trainer.epochs" and _length_by_steps(a, b):
            continue
        if a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def _length_by_steps(a: dict, b: dict) -> bool:
    """Both (flattened) configs set the same trainer.max_steps: their trainer.epochs is unused
    (a model's train_with may have changed its default since the earlier run)."""
    steps = a.get("trainer.max_steps")
    return steps is not None and steps == b.get("trainer.max_steps")


# -- which option of each group a resolved config is ------------------------------------------


def _target_name(target: str) -> str:
    """runner.models.mlp.MLP -> mlp; torch.optim.AdamW -> adamw."""
    parts = str(target).split(".")
    if parts[0] == "runner" and len(parts) >= 3:
        return parts[-2]
    return parts[-1].lower()


def _option_from_conf(group: str, node: dict) -> str:
    """The conf/<group>/ option a config node came from (when Hydra's record is missing): the
    option with the same `_target_` whose keys match the node best; else the target's name."""
    best, score = None, -1
    for f in sorted((Path(CONF_DIR) / group).glob("*.yaml")):
        try:
            opt = yaml.safe_load(f.read_text()) or {}
        except Exception:
            continue
        if not isinstance(opt, dict) or opt.get("_target_") != node.get("_target_"):
            continue
        sc = sum(1 for k, v in opt.items() if node.get(k) == v)
        if sc > score:
            best, score = f.stem, sc
    return best or _target_name(node["_target_"])


def choices_of(config: dict, hydra_choices: dict | None = None) -> dict:
    """The option of each config group: Hydra's runtime choices when known, else derived from the
    nodes' `_target_`. `reg` is the list of tricks in the config, e.g. `[rdrop,flooding]`."""
    hydra_choices = {
        k: v for k, v in (hydra_choices or {}).items() if not str(k).startswith("hydra/")
    }
    out = {}
    for g in GROUPS:
        node = config.get(g)
        if g in LIST_GROUPS:
            names = list(node.keys()) if isinstance(node, dict) else []
            out[g] = "[" + ",".join(names) + "]" if names else "none"
        elif g in hydra_choices and hydra_choices[g] is not None:
            out[g] = str(hydra_choices[g])
        elif isinstance(node, dict):
            out[g] = _option_from_conf(g, node) if node.get("_target_") else "none"
    for k, v in hydra_choices.items():
        if k not in out and k != "logger" and v is not None:
            out[k] = str(v)
    return out


# -- model defaults: the optimizer settings a model trains with --------------------------------
# A model config's `train_with` node ({lr: {adamw: 5e-5, lion: 1e-5}, warmup_steps: 0.06,
# epochs: 3}) feeds the optimizer and schedule files and train.yaml's trainer.epochs through
# `${oc.select:model.train_with.<key>,<own default>}`:
# Hydra's composition itself applies it (every entry point agrees), and any value the user sets,
# on the command line or in a config of their own, replaces the interpolation and wins.
_DEFAULT_KEYS = (("trainer", "epochs"), ("optimizer", "lr"), ("schedule", "warmup_steps"))


def model_defaults(cfg: DictConfig) -> list[str]:
    """One note per trainer/optimizer/schedule key whose value came from the model's `train_with`
    (e.g. "optimizer.lr=5e-05 from model=minilm's defaults"), or that the model has no value
    for with this optimizer. Empty when the model has no `train_with` or the user set them."""
    model = cfg.get("model")
    if not isinstance(model, DictConfig) or not isinstance(model.get("train_with"), DictConfig):
        return []
    names = choices_of(to_container(cfg))
    mname, notes = names.get("model", "?"), []
    for group, key in _DEFAULT_KEYS:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or key not in node:
            continue
        if key == "epochs" and node.get("max_steps") is not None:
            continue  # max_steps sets the length: the epochs are not used
        raw = node._get_node(key)._value()
        if not (isinstance(raw, str) and raw.startswith("${oc.select:model.train_with.")):
            continue  # the user's own value
        path = raw[len("${oc.select:") :].split(",")[0]
        if OmegaConf.select(cfg, path) is not None:
            notes.append(f"{group}.{key}={node[key]} from model={mname}'s defaults")
        elif group == "optimizer":
            notes.append(
                f"{group}.{key}={node[key]}: model={mname} has no {key} for "
                f"optimizer={names.get('optimizer')}, its own default is used"
            )
    return notes
