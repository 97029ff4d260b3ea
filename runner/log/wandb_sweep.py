"""A W&B Sweeps file from a `tricks train -m` command line, so `wandb agent` runs the same jobs.

    python -m runner.log.wandb_sweep optimizer=adamw,lion seed=0,1,2 trainer.epochs=5 > sweep.yaml
    wandb sweep sweep.yaml             # prints the sweep id
    wandb agent ENTITY/PROJECT/SWEEP_ID

Each comma list (or Hydra `range(...)` / `choice(...)`) becomes a parameter with `values`; an
Optuna-style `interval(a, b)` becomes a uniform distribution (method `random`, as W&B cannot
grid a range). The agent calls `tricks train logger=wandb logger.project=P <fixed overrides>
<key=value of the sweep point>` (W&B's `${args_no_hyphens}`: exactly Hydra's syntax), so each
point is an ordinary run: same config composition, model defaults, checks and run directory.
Hydra's own keys (hydra/launcher, hydra.sweep.dir, ...) do not apply to an agent's runs and are
dropped with a note. `tricks compare` reads the runs back from W&B (`wandb:ENTITY/PROJECT`) or
from their local run directories.
"""

from __future__ import annotations

import argparse
import sys

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep

from runner.errors import ConfigError
from runner.overrides import precheck


def _value(s: str):
    """A sweep value as W&B stores it: a number when it is one, else Hydra's text."""
    try:
        v = yaml.safe_load(s)
    except yaml.YAMLError:
        return s
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else s


def sweep_config(
    overrides: list[str],
    project: str = "tricks",
    method: str | None = None,
    metric: str = "best/val/acc",
    goal: str = "maximize",
) -> dict:
    """The W&B sweep config of a `-m` command line's overrides."""
    args = [a for a in overrides if a not in ("-m", "--multirun")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:
        raise ConfigError("", f"cannot parse overrides: {str(e).splitlines()[0]}")
    params, fixed, dropped = {}, [], []
    for o in parsed:
        key = o.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            dropped.append(o.input_line)
            continue
        if not o.is_sweep_override():
            fixed.append(o.input_line)
            continue
        v = o.value()
        if isinstance(v, IntervalSweep):
            lo, hi = v.start, v.end
            kind = "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform"
            params[key] = {"distribution": kind, "min": lo, "max": hi}
        else:
            params[key] = {"values": [_value(s) for s in o.sweep_string_iterator()]}
    if not params:
        raise ConfigError("overrides", "no sweep: give at least one comma list, e.g. seed=0,1,2")
    for d in dropped:
        print(
            f"note: {d} dropped (Hydra's own key; W&B's agent launches the runs)", file=sys.stderr
        )
    if method is None:
        method = "random" if any("distribution" in p for p in params.values()) else "grid"
    if method == "grid" and any("distribution" in p for p in params.values()):
        raise ConfigError("--method", "grid needs value lists, not interval(...)", "random, bayes")
    return {
        "project": project,
        "method": method,
        "metric": {"name": metric, "goal": goal},
        "parameters": params,
        "command": [
            "${env}",
            "tricks",
            "train",
            "logger=wandb",
            f"logger.project={project}",
            *fixed,
            "${args_no_hyphens}",
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m runner.log.wandb_sweep", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("overrides", nargs="+", help="the -m command line's Hydra overrides")
    ap.add_argument("--project", default="tricks")
    ap.add_argument("--method", choices=("grid", "random", "bayes"), default=None)
    ap.add_argument("--metric", default="best/val/acc", help="what bayes optimizes")
    ap.add_argument("--out", default=None, help="file to write (default: stdout)")
    a = ap.parse_args(argv)
    try:
        precheck(["-m", *a.overrides])  # the same checks as `tricks train -m`
        cfg = sweep_config(a.overrides, a.project, a.method, a.metric)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(cfg, sort_keys=False)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
