"""`tricks study FILE --out DIR --status`: the study's progress from its ledger, on any machine
that reaches the storage: runs done / running / queued / failed per phase and arm, the workers
alive, the coordinator, an ETA (the runs left x the mean run time so far / the workers)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from runner.errors import ConfigError
from runner.study.ledger import Ledger, default_url, running_study, study_name
from runner.study.plan import n_runs
from runner.study.spec import Study

STATES = ("completed", "running", "queued", "failed")


def _duration(t) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return None


def counts(ledger: Ledger) -> dict[tuple[str, str], Counter]:
    """(phase, workload/arm) -> Counter of run statuses (the latest row of each run)."""
    out: dict[tuple[str, str], Counter] = {}
    for r in ledger.runs().values():
        out.setdefault((r.phase, f"{r.workload}/{r.arm}"), Counter())[r.status] += 1
    return out


def eta_seconds(ledger: Ledger, left: int, workers: int) -> float | None:
    """The runs left x the mean wall time of the runs trained so far (a worker's completed
    rows: not the runs found done in their dirs, nor a dead worker's), over the workers."""
    took = [
        d
        for t in ledger.rows()
        if t.state.name == "COMPLETE"
        and t.user_attrs.get("worker")
        and (d := _duration(t)) is not None
        and d > 0
    ]
    if not took or left <= 0:
        return 0.0 if left <= 0 else None
    return left * (sum(took) / len(took)) / max(1, workers)


def status_text(study: Study, out: Path, storage: str | None) -> str:
    url = storage or default_url(out)
    if storage is None and not (Path(out) / "study.db").is_file():
        raise ConfigError("--out", f"no ledger in {out} (study.db)", "a DIR a study runs in")
    try:
        led = Ledger(url, study_name(out), root=out)
    except ConfigError:  # DIR mounted at another path here: the one study running in URL
        led = Ledger(url, running_study(url), root=out)
    by = counts(led)
    lines = [f"study {study.name}: ledger {led.name} in {url}", f"state: {led.meta('state')}"]
    lines.append(f"{'phase':8} {'workload/arm':28} " + " ".join(f"{s:>9}" for s in STATES))
    for (phase, arm), c in sorted(
        by.items(), key=lambda kv: (("cost", "tune", "confirm").index(kv[0][0]), kv[0][1])
    ):
        lines.append(f"{phase:8} {arm:28} " + " ".join(f"{c[s]:>9}" for s in STATES))
    total = Counter()
    for c in by.values():
        total.update(c)
    arms = {a for (p, a) in by if p == "tune"}
    planned = max(n_runs(study, len(arms) or len(study.arms) * len(study.workloads)), 0)
    planned += sum(sum(c.values()) for (p, _), c in by.items() if p == "cost")
    done = total["completed"] + total["failed"]
    workers = led.workers()
    coord = led.meta("coordinator")
    alive = isinstance(coord, dict) and time.time() - float(coord.get("seen", 0)) < led.grace
    lines.append(
        f"runs: {done} done ({total['failed']} failed), {total['running']} running, "
        f"{total['queued']} queued, of {max(planned, sum(total.values()))} planned"
    )
    lines.append(
        f"workers alive: {len(workers)}"
        + (
            ": " + ", ".join(f"{w['id']} ({w.get('run') or 'idle'})" for w in workers)
            if workers
            else ""
        )
    )
    lines.append(
        "coordinator: "
        + (
            f"pid {coord['pid']} on {coord['host']}"
            if alive
            else "none (re-run tricks study to resume)"
        )
    )
    eta = eta_seconds(led, max(planned, sum(total.values())) - done, len(workers))
    lines.append(
        "ETA: " + (f"{eta / 60:.1f} min" if eta is not None else "unknown (no run done yet)")
    )
    return "\n".join(lines)
