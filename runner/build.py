"""Instantiate data, model, optimizer, schedule, tricks and loggers from the config (`_target_`)."""

from __future__ import annotations

import inspect
import json

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from runner.config import LIST_GROUPS, TRICK_GROUPS, _option_from_conf
from runner.errors import ConfigError, closest
from runner.log import JsonlSink, Logger
from runner.losses import default, select_metric

# Keys of an optimizer config that are ours, not the optimizer constructor's.
OPT_META_KEYS = ("_target_", "fused", "decay_bias_and_norm")


def _target(node, key: str):
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{key}._target_", "missing")
    try:
        return get_object(target)
    except Exception as e:
        raise ConfigError(f"{key}._target_", f"cannot import {target!r} ({type(e).__name__})")


def call(node: DictConfig, key: str, **extra):
    """Call node._target_ with the node's keys plus `extra`; bad keys give a ConfigError."""
    fn = _target(node, key)
    kwargs = {
        k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"
    }
    sig = inspect.signature(fn)
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not has_var_kw:
        unknown = [k for k in kwargs if k not in sig.parameters]
        if unknown:
            allowed = ", ".join(n for n in sig.parameters if n not in extra and n != "self")
            hint = closest(unknown[0], [n for n in sig.parameters if n not in extra])
            raise ConfigError(f"{key}.{unknown[0]}", f"unknown key{hint}", allowed)
        extra = {k: v for k, v in extra.items() if k in sig.parameters}
    try:
        return fn(**kwargs, **extra)
    except TypeError as e:
        raise ConfigError(key, str(e).split("\n")[0])


# Built datasets by (resolved dataset config, tokenizer), when a long-lived process trains many
# runs on the same data (the `tricks study` workers). Off by default: one run needs no memo.
_DATA_MEMO: dict | None = None


def memoize_data(on: bool = True) -> None:
    global _DATA_MEMO
    _DATA_MEMO = {} if on else None


def data(cfg: DictConfig):
    # Text datasets tokenize with the model's tokenizer (model.tokenizer); builders that do not
    # take a `tokenizer` argument never see it (call() filters extras by signature).
    model_node = cfg.get("model")
    tok = model_node.get("tokenizer") if isinstance(model_node, DictConfig) else None
    if _DATA_MEMO is None:
        return call(cfg.dataset, "dataset", tokenizer=tok)
    key = json.dumps(
        [OmegaConf.to_container(cfg.dataset, resolve=True), tok], sort_keys=True, default=str
    )
    if key not in _DATA_MEMO:  # the splits are never written to in place: sharing is safe
        _DATA_MEMO.clear()  # keep one dataset: a study switching datasets must not pile them up
        _DATA_MEMO[key] = call(cfg.dataset, "dataset", tokenizer=tok)
    return _DATA_MEMO[key]


def loss(cfg: DictConfig, data):
    """The `loss` group's object (runner.losses), checked against the data's labels: a
    multi-label loss needs multi-hot labels (a 2-d `y`) and cross-entropy one label per row."""
    node = cfg.get("loss")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        obj = default()
    else:
        obj = call(node, "loss")
    ds = cfg.get("dataset")
    name = (
        _option_from_conf("dataset", OmegaConf.to_container(ds, resolve=True))
        if isinstance(ds, DictConfig) and ds.get("_target_")
        else "?"
    )
    obj.check_data(data.train["y"].dim() == 2, name)
    trainer = cfg.get("trainer")
    obj.select = select_metric(trainer.get("select", "auto") if trainer else "auto", obj)
    return obj


def model(cfg: DictConfig, info: dict):
    node = cfg.model
    if "train_with" in node:  # the settings it trains with (config.model_defaults), no argument
        node = OmegaConf.create(
            {
                k: v
                for k, v in OmegaConf.to_container(node, resolve=True).items()
                if k != "train_with"
            }
        )
    return call(node, "model", **info)


def param_groups(model: torch.nn.Module, weight_decay: float, decay_bias_and_norm: bool):
    """Decoupled weight decay on weights only: biases and normalisation weights (every parameter
    with fewer than 2 dims) go to a group without decay unless decay_bias_and_norm."""
    if decay_bias_and_norm or not weight_decay:
        return [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "weight_decay": weight_decay,
            }
        ]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def optimizer(cfg: DictConfig, model: torch.nn.Module, fused_ok: bool):
    node = cfg.optimizer
    cls = _target(node, "optimizer")
    kwargs = {
        k: v
        for k, v in OmegaConf.to_container(node, resolve=True).items()
        if k not in OPT_META_KEYS
    }
    if isinstance(kwargs.get("betas"), list):
        kwargs["betas"] = tuple(kwargs["betas"])
    wd = kwargs.pop("weight_decay", 0.0)
    groups = param_groups(model, wd, node.get("decay_bias_and_norm", False))
    sig = inspect.signature(cls.__init__).parameters
    fused = node.get("fused", "auto")
    if "fused" in sig and fused_ok and fused in ("auto", True):
        kwargs["fused"] = True
    elif "fused" in sig and fused is False:
        kwargs["fused"] = False
    unknown = [k for k in kwargs if k not in sig]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        known = [k for k in sig if k not in ("self", "params")]
        raise ConfigError(
            f"optimizer.{unknown[0]}", f"unknown key{closest(unknown[0], known)}", ", ".join(known)
        )
    try:
        return cls(groups, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError("optimizer", str(e).split("\n")[0])


def schedule(cfg: DictConfig, opt, total_steps: int):
    fn = call(cfg.schedule, "schedule", total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def trick_nodes(cfg: DictConfig) -> list[tuple[str, str | None, DictConfig]]:
    """(config key, list entry name or None, node) of every trick a config selects, in config
    order; a list entry that is not a trick config is an error."""
    out = []
    for group in TRICK_GROUPS:
        node = cfg.get(group)
        if not node:
            continue
        items = node.items() if group in LIST_GROUPS else [(None, node)]
        for name, sub in items:
            if not isinstance(sub, DictConfig) or "_target_" not in sub:
                if group in LIST_GROUPS:
                    raise ConfigError(f"{group}.{name}", "not a trick config (no _target_)")
                continue
            out.append((f"{group}.{name}" if name else group, name, sub))
    return out


def tricks(cfg: DictConfig) -> list:
    """Every selected trick, sorted by `order` (stable: config order breaks ties)."""
    found = []
    for key, name, sub in trick_nodes(cfg):
        t = call(sub, key)
        if t.needs_double_backward and cfg.trainer.get("compile", False):
            raise ConfigError(
                key,
                "needs a double backward, which torch.compile does not support",
                "trainer.compile=false",
            )
        t._name = name or OmegaConf.select(cfg, "clip._target_").rsplit(".", 1)[-1].lower()
        found.append(t)
    return sorted(found, key=lambda t: t.order)


def loggers(cfg: DictConfig, run_dir):
    """The always-on local files plus the `logger` group's sink, if it names one."""
    extra = []
    node = cfg.get("logger")
    if node and node.get("_target_"):
        extra.append(call(node, "logger"))
    return Logger(JsonlSink(run_dir), extra)
