"""The study file: parsing and validation. Every bad input is one ConfigError line naming the
study-file key, raised before any run starts."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.errors import ConfigError, check, closest
from runner.stats import lower_is_better
from runner.study.space import Dim, parse

KEYS = (
    "common",
    "workloads",
    "baseline",
    "arms",
    "search",
    "arm_search",
    "budget",
    "tune_seeds",
    "seeds",
    "select",
    "metric",
    "equal_compute",
    "target",
    "analysis",
    "direction",
    "search_seed",
    "cost_steps",
    "cost_seconds",
    "compare",
    "replicates",
    "seeds_per_replicate",
    "vary_data",
    "aa",
    "controls",
)
#: the A/A arm's name and what it adds to the baseline's overrides: the same config along
#: another random path of each seed (data order, dropout; the same initial weights and split)
AA_ARM, AA_OVERRIDE = "aa", "trainer.stream_offset=1"
#: the dataset keys that re-draw the data (train/val/test) without touching the run seed
SPLIT_KEYS = ("data_seed", "split_seed")
# Every run of a study: no rich bar per run (the study has its own view), and completed runs
# keep no checkpoint (dozens of runs; an OVERRIDE trainer.keep_checkpoints=... keeps them).
RUN_DEFAULTS = ["trainer.progress=false", "trainer.keep_checkpoints=none"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Study:
    path: Path
    text: str
    description: str
    common: list[str]
    workloads: dict[str, list[str]]
    baseline: str
    arms: dict[str, list[str]]
    search: list[Dim]
    arm_search: dict[str, list[Dim]]
    budget: int
    tune_seeds: list[int]
    seeds: list[int]
    select: str
    metric: str
    select_higher: bool
    metric_higher: bool
    equal_compute: bool
    target: dict | None
    analysis: Path | None
    search_seed: int = 0
    cost_steps: int = 200
    cost_seconds: float = 3.0
    overrides: list[str] = field(default_factory=list)
    compare: list[tuple[str, str]] = field(default_factory=list)
    replicates: int = 1
    vary_data: bool = False
    aa: bool = False
    controls: list[str] = field(default_factory=list)
    # workload -> (dataset key, its configured value): the split replicate r re-draws (r > 0)
    split: dict[str, tuple[str, int]] = field(default_factory=dict)

    def rep_tune_seeds(self, r: int) -> list[int]:
        """Replicate r's tune seeds: its share of `tune_seeds` (split in order)."""
        k = len(self.tune_seeds) // self.replicates
        return self.tune_seeds[r * k : (r + 1) * k]

    def rep_seeds(self, r: int) -> list[int]:
        """Replicate r's confirmation seeds: its share of `seeds` (split in order)."""
        k = len(self.seeds) // self.replicates
        return self.seeds[r * k : (r + 1) * k]

    def rep_search_seed(self, r: int) -> int:
        # replicate 0 keeps the file's scramble: a one-replicate study plans as before
        return self.search_seed + r

    def rep_data(self, w: str, r: int) -> list[str]:
        """Replicate r's split override (vary_data; none for replicate 0: the file's split)."""
        if not self.vary_data or r == 0 or w not in self.split:
            return []
        key, base = self.split[w]
        return [f"dataset.{key}={base + r}"]

    @property
    def name(self) -> str:
        return self.path.parent.name if self.path.name == "study.yaml" else self.path.stem

    def space(self, arm: str) -> list[Dim]:
        return self.search + self.arm_search.get(arm.split("@")[0] if "@" in arm else arm, [])


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge(*lists) -> list[str]:
    """Concatenate override lists; a later override of the same key replaces the earlier one."""
    out: dict[str, str] = {}
    for lst in lists:
        for o in lst:
            out.pop(key_of(o), None)
            out[key_of(o)] = o
    return list(out.values())


def describe(text: str) -> str:
    """A study file's one-line description: its first comment line."""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
        if line.strip():
            break
    return ""


def _overrides(v, key: str) -> list[str]:
    if v is None:
        return []
    check(
        isinstance(v, list) and all(isinstance(o, str) and "=" in o for o in v),
        key,
        f"must be a list of KEY=VALUE overrides, got {v!r}",
        "e.g. [model=mlp, trainer.epochs=30]",
    )
    return list(v)


def _seeds(v, key: str) -> list[int]:
    ok = (
        isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool) for s in v)
    )
    check(bool(ok), key, f"must be a non-empty list of integers, got {v!r}", "e.g. [0, 1, 2]")
    check(len(set(v)) == len(v), key, f"repeats a seed: {v!r}", "distinct seeds")
    return list(v)


def _metric(v, key: str) -> str:
    check(
        isinstance(v, str) and "/" in v,
        key,
        f"must be a metric name, got {v!r}",
        "e.g. val/acc, val/loss, test/acc",
    )
    return v


def _is_test(metric: str) -> bool:
    return "test" in metric.split("/")


def _ranges(v, where: str) -> list[Dim]:
    if v is None:
        return []
    check(
        isinstance(v, dict),
        where,
        f"must map config keys to ranges, got {v!r}",
        "e.g. {optimizer.lr: loguniform(1e-4, 3e-2)}",
    )
    return [parse(str(k), r, where) for k, r in _rejoin(v).items()]


def _rejoin(v: dict) -> dict:
    """In a YAML flow mapping `{eps: loguniform(0.1, 3)}` the comma splits the range into
    `eps: 'loguniform(0.1'` and a key `3)` without value: join such pieces back."""
    out, open_key = {}, None
    for k, r in v.items():
        if open_key is not None and r is None:
            out[open_key] += f", {k}"
            if ")" in str(k):
                open_key = None
            continue
        out[k] = r
        open_key = k if isinstance(r, str) and "(" in r and ")" not in r else None
    return out


def _arms(raw: dict) -> dict[str, list[str]]:
    arms = raw.get("arms")
    check(
        isinstance(arms, dict) and bool(arms),
        "arms",
        "must map arm names to override lists",
        "e.g. {none: [], fgm: ['reg=[fgm]']}",
    )
    for a in arms:
        check(
            bool(_NAME.match(str(a))),
            "arms",
            f"bad arm name {a!r}",
            "letters, digits, _ . - (no @: it marks equal-compute baselines)",
        )
    return {str(a): _overrides(o, f"arms.{a}") for a, o in arms.items()}


def _higher(raw: dict, metric: str) -> bool:
    d = raw.get("direction")
    if d is None:
        return not lower_is_better(metric)
    check(d in ("max", "min"), "direction", f"got {d!r}", "max, min")
    return d == "max"


def _target(v) -> dict | None:
    if v is None:
        return None
    ok = (
        isinstance(v, dict)
        and len(v) == 1
        and isinstance(next(iter(v.values())), (int, float))
        and not isinstance(next(iter(v.values())), bool)
    )
    check(ok, "target", f"must be one metric and its value, got {v!r}", "e.g. {val/acc: 0.9}")
    ((k, t),) = v.items()
    _metric(k, "target")
    return {"key": str(k), "value": float(t)}


def _int(v, key: str, lo: int, default: int) -> int:
    if v is None:
        return default
    check(
        isinstance(v, int) and not isinstance(v, bool) and v >= lo,
        key,
        f"must be an integer >= {lo}, got {v!r}",
    )
    return v


def _seconds(v, default: float) -> float:
    if v is None:
        return default
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    check(ok, "cost_seconds", f"must be a number of seconds > 0, got {v!r}")
    return float(v)


def _mapping(text: str) -> dict:
    """The study file's YAML as a mapping of known keys."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("study file", f"not valid YAML ({' '.join(str(e).split())[:120]})")
    check(isinstance(raw, dict), "study file", "must be a YAML mapping", ", ".join(KEYS))
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        hint = closest(unknown[0], KEYS)
        raise ConfigError(str(unknown[0]), f"unknown study key{hint}", ", ".join(KEYS))
    return raw


def _arms_and_their_search(raw: dict) -> tuple[dict[str, list[str]], dict]:
    """(arms, arm_search): the baseline and every arm_search entry name a known arm."""
    arms = _arms(raw)
    check(
        raw.get("baseline") in arms,
        "baseline",
        f"unknown arm {raw.get('baseline')!r}{closest(raw.get('baseline'), arms)}",
        ", ".join(arms),
    )
    own = raw.get("arm_search") or {}
    check(isinstance(own, dict), "arm_search", "must map arms to ranges", ", ".join(arms))
    for a in own:
        check(a in arms, "arm_search", f"unknown arm {a!r}{closest(a, arms)}", ", ".join(arms))
    return arms, own


def _workloads(raw: dict) -> dict:
    """Workload names -> their raw override lists (one workload `main` when none is given)."""
    workloads = raw.get("workloads") or {"main": []}
    check(
        isinstance(workloads, dict)
        and all(_NAME.match(str(w)) and not str(w).startswith("_") for w in workloads),
        "workloads",
        f"must map workload names to override lists, got {workloads!r}",
        "e.g. {mlp: [model=mlp], cnn: [model=cnn1d]}",
    )
    return workloads


def _budget(raw: dict) -> int:
    budget = raw.get("budget")
    check(
        isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1,
        "budget",
        f"must be an integer >= 1 (trials per arm), got {budget!r}",
    )
    return budget


def _tune_and_confirm_seeds(raw: dict, reps: int) -> tuple[list[int], list[int]]:
    """(tune_seeds, seeds), disjoint: the confirmation runs on fresh seeds. Each splits in order
    into `reps` equal shares, one per replicate; `seeds_per_replicate: S` states the share
    (and, without `seeds`, makes them: the R x S integers after the largest tune seed)."""
    tune = _seeds(raw.get("tune_seeds"), "tune_seeds")
    per = _int(raw.get("seeds_per_replicate"), "seeds_per_replicate", 1, 0)
    if raw.get("seeds") is None and per:
        raw = {**raw, "seeds": list(range(max(tune) + 1, max(tune) + 1 + reps * per))}
    seeds = _seeds(raw.get("seeds"), "seeds")
    for key, xs in (("tune_seeds", tune), ("seeds", seeds)):
        check(
            len(xs) % reps == 0,
            key,
            f"{len(xs)} seeds cannot be split across replicates: {reps}",
            f"a multiple of {reps} seeds (each replicate its own share)",
        )
    check(
        not per or len(seeds) == reps * per,
        "seeds_per_replicate",
        f"{per} x replicates {reps} is not the {len(seeds)} seeds given",
        f"{len(seeds) // reps}, or leave seeds out (made from seeds_per_replicate)",
    )
    both = sorted(set(tune) & set(seeds))
    check(
        not both,
        "seeds",
        f"overlap the tune seeds ({', '.join(map(str, both))}): the "
        "confirmation must run on fresh seeds",
        "seeds disjoint from tune_seeds",
    )
    return tune, seeds


def _select_metric(raw: dict) -> str:
    """The metric trials are chosen on: never a test metric."""
    select = _metric(raw.get("select"), "select")
    check(
        not _is_test(select),
        "select",
        f"{select} is a test metric: choosing on it leaks the test set into the result",
        "a validation (or train) metric, e.g. val/acc, val/loss",
    )
    return select


def _compare(raw: dict, arms: dict, baseline: str) -> list[tuple[str, str]]:
    """`compare: [[a, b], ...]`: arm a against arm b, beside the comparisons with the baseline
    (e.g. a trick against its control); these pairs are a Holm family of their own."""
    pairs = raw.get("compare")
    if pairs is None:
        return []
    others = ", ".join(a for a in arms if a != baseline)
    allowed = f"a list of [arm, arm] pairs of two different arms, neither the baseline: {others}"
    check(isinstance(pairs, list) and pairs, "compare", f"got {pairs!r}", allowed)
    out = []
    for p in pairs:
        ok = isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        check(ok, "compare", f"got {p!r}", allowed)
        a, b = p
        for x in (a, b):
            check(x in arms, "compare", f"unknown arm {x!r}", allowed)
            check(x != baseline, "compare", f"{x!r} is the baseline, compared already", allowed)
        check(a != b, "compare", f"{a!r} against itself", allowed)
        check((a, b) not in out and (b, a) not in out, "compare", f"{p!r} twice", allowed)
        out.append((a, b))
    return out


def _analysis(raw: dict, path: Path) -> Path | None:
    """The analysis file, relative to the study file's folder, if one is named."""
    analysis = raw.get("analysis")
    if analysis is None:
        return None
    analysis = path.parent / str(analysis)
    check(
        analysis.is_file(),
        "analysis",
        f"no file {analysis}",
        "a Python file beside the study file defining analyse(study, study_dir)",
    )
    return analysis


def _flag(raw: dict, key: str, default):
    v = raw.get(key, default)
    check(v is None or isinstance(v, bool), key, f"got {v!r}", "true, false")
    return v


def _controls(raw: dict, arms: dict, aa: bool) -> list[str]:
    """`controls: [arm, ...]`: declared null controls (their own Holm family); the A/A arm is
    one without being named."""
    v = raw.get("controls") or []
    tricks = [a for a in arms if a != raw["baseline"]]
    check(isinstance(v, list), "controls", f"got {v!r}", "a list of arms: " + ", ".join(tricks))
    for a in v:
        if a not in tricks:
            near = difflib.get_close_matches(str(a), tricks, 1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError("controls", f"unknown arm {a!r}", hint + ", ".join(tricks))
    return list(dict.fromkeys(v)) + ([AA_ARM] if aa and AA_ARM not in v else [])


def parse_text(path: Path, text: str, overrides: list[str] = ()) -> Study:
    """The study in `text` (read from `path`), checked on its own (no config composed)."""
    raw = _mapping(text)
    arms, own = _arms_and_their_search(raw)
    workloads = _workloads(raw)
    budget = _budget(raw)
    reps = _int(raw.get("replicates"), "replicates", 1, 1)
    tune, seeds = _tune_and_confirm_seeds(raw, reps)
    aa = _flag(raw, "aa", reps >= 2)
    check(
        not (aa and AA_ARM in arms),
        "aa",
        f"an arm is named {AA_ARM!r} already: the A/A arm takes that name",
        f"rename arm {AA_ARM!r}, or aa: false",
    )
    if aa:
        arms = {**arms, AA_ARM: merge(arms[raw["baseline"]], [AA_OVERRIDE])}
        if raw["baseline"] in own:
            own = {**own, AA_ARM: own[raw["baseline"]]}
    select = _select_metric(raw)
    metric = _metric(raw.get("metric", "test/acc"), "metric")
    check(
        isinstance(raw.get("equal_compute", False), bool),
        "equal_compute",
        f"got {raw.get('equal_compute')!r}",
        "true, false",
    )
    analysis = _analysis(raw, path)
    return Study(
        path=path,
        text=text,
        description=describe(text),
        common=_overrides(raw.get("common"), "common"),
        workloads={str(w): _overrides(o, f"workloads.{w}") for w, o in workloads.items()},
        baseline=raw["baseline"],
        arms=arms,
        search=_ranges(raw.get("search"), "search"),
        arm_search={a: _ranges(r, f"arm_search.{a}") for a, r in own.items()},
        budget=budget,
        tune_seeds=tune,
        seeds=seeds,
        select=select,
        metric=metric,
        select_higher=_higher(raw, select),
        metric_higher=_higher(raw, metric),
        equal_compute=bool(raw.get("equal_compute", False)),
        target=_target(raw.get("target")),
        analysis=analysis,
        search_seed=_int(raw.get("search_seed"), "search_seed", 0, 0),
        cost_steps=_int(raw.get("cost_steps"), "cost_steps", 2, 200),
        cost_seconds=_seconds(raw.get("cost_seconds"), 3.0),
        overrides=list(overrides),
        compare=_compare(raw, arms, raw["baseline"]),
        replicates=reps,
        vary_data=_flag(raw, "vary_data", None),
        aa=aa,
        controls=_controls(raw, arms, aa),
    )


def run_overrides(
    study: Study, workload: str, arm_overrides: list[str], params: dict, seed: int, rep: int = 0
) -> list[str]:
    """One run's overrides. Order: defaults, common, workload, arm, the command line's
    OVERRIDES (they apply to every run), replicate `rep`'s split, the trial's parameters, the
    seed."""
    return merge(
        RUN_DEFAULTS,
        study.common,
        study.workloads[workload],
        arm_overrides,
        study.overrides,
        study.rep_data(workload, rep),
        [f"{k}={_fmt(v)}" for k, v in params.items()],
        [f"seed={seed}"],
    )


def _fmt(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
