"""The study's typed records: one run of the plan, an arm's plan, an arm's result.

Each is a frozen dataclass with `to_json()` / `from_json()`: the ledger (runner.study.ledger)
stores a run as its JSON, study.json is assembled from them (runner.study.export). The verdict
is `runner.stats.Verdict`, the enum `tricks compare` uses too."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from runner.stats import Verdict

__all__ = ["ArmPlan", "ArmResult", "RunRecord", "Verdict", "PHASES", "FINAL"]

#: the phases of a study, in order: interleaved timing runs, tuning trials, confirmation runs
PHASES = ("cost", "tune", "confirm")
#: the statuses a run ends in (the ledger's "queued" and "running" are not final)
FINAL = ("completed", "failed")
#: the pin of the timing runs: local worker 0 alone runs them, in order (runner.study.cost)
LOCAL_PIN = "local0"


def _from(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class RunRecord:
    """One run of the plan: a tune trial's run on one tune seed, a confirmation run, or a
    timing run. `key` (its run dir, relative to the study dir) is unique in the study: the
    ledger enqueues a key once. `status`/`result`/`error` are filled from the ledger."""

    key: str
    workload: str
    arm: str
    phase: str  # one of PHASES
    overrides: tuple[str, ...]
    seed: int
    params: dict = field(default_factory=dict)
    trial: int | None = None  # the tune trial's index (the chosen one's, for a confirmation)
    replicate: int = 0  # issue 32 tunes each arm R times; today one replicate
    label: str = ""  # "W/ARM" (the progress view's best-so-far), "warmup" for the warm-up
    pin: str | None = None  # a worker tag only that worker may take ("local0": timing runs)
    status: str = "queued"  # queued | running | completed | failed
    result: dict = field(default_factory=dict)  # figures from the run's summary.json
    error: str | None = None
    attempt: int = 0  # how many times a dead worker's run was re-queued

    @property
    def run_dir(self) -> Path:
        return Path(self.key)

    def to_json(self) -> dict:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        return d

    @classmethod
    def from_json(cls, d: dict) -> RunRecord:
        d = dict(d)
        d["overrides"] = tuple(d.get("overrides", ()))
        return _from(cls, d)

    def plan_json(self) -> dict:
        """What the plan fixes (the ledger's row at enqueue time): no status or result."""
        d = self.to_json()
        for k in ("status", "result", "error", "attempt"):
            d.pop(k)
        return d

    def with_status(self, status: str, result: dict | None = None, error=None, attempt=None):
        return replace(
            self,
            status=status,
            result=dict(result or {}),
            error=error,
            attempt=self.attempt if attempt is None else attempt,
        )


@dataclass(frozen=True)
class ArmPlan:
    """An arm as the study runs it: its overrides, the length forced on an equal-compute
    baseline (`<baseline>@<arm>`: the baseline given `equal_compute_of`'s measured compute).
    Reads like the dict it replaced (plan["overrides"]) for the code that indexed that."""

    name: str
    overrides: tuple[str, ...]
    forced: tuple[str, ...] = ()
    equal_compute_of: str | None = None

    def __getitem__(self, key: str):
        v = getattr(self, key)
        return list(v) if isinstance(v, tuple) else v

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "overrides": list(self.overrides),
            "forced": list(self.forced),
            "equal_compute_of": self.equal_compute_of,
        }

    @classmethod
    def from_json(cls, d: dict) -> ArmPlan:
        return cls(
            d["name"],
            tuple(d.get("overrides", ())),
            tuple(d.get("forced", ())),
            d.get("equal_compute_of"),
        )


@dataclass(frozen=True)
class ArmResult:
    """An arm's outcome in one workload (and replicate): the chosen trial, its confirmation
    figures, the verdict against the baseline. study.json's arm record holds these and more
    (runner.study.export); this is the part other code reasons about."""

    arm: str
    workload: str
    chosen_trial: int | None
    chosen: dict | None
    values: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    failed: int = 0
    verdict: Verdict | str = ""
    replicate: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["values"], d["seeds"] = list(self.values), list(self.seeds)
        d["verdict"] = str(self.verdict)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ArmResult:
        d = dict(d)
        d["values"], d["seeds"] = tuple(d.get("values", ())), tuple(d.get("seeds", ()))
        v = d.get("verdict", "")
        d["verdict"] = Verdict(v) if v in {x.value for x in Verdict} else v
        return _from(cls, d)

    @classmethod
    def of_record(cls, workload: str, arm: str, rec: dict) -> ArmResult:
        """From study.json's arm record."""
        f = rec.get("final") or {}
        return cls.from_json(
            {
                "arm": arm,
                "workload": workload,
                "chosen_trial": rec.get("chosen_trial"),
                "chosen": rec.get("chosen"),
                "values": f.get("values", ()),
                "seeds": f.get("seeds", ()),
                "failed": f.get("failed", 0),
                "verdict": rec.get("verdict", ""),
            }
        )
