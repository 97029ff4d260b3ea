"""The study's ledger in an Optuna storage: every run of the plan, its status and its result.

One Optuna study per tricks study (named after its DIR), one Optuna trial per attempt at a run:
the run's record (runner.study.records.RunRecord) is the trial's user attr `run`, its key (the
run dir) the user attr `key`. Only the coordinator enqueues, and only keys the ledger lacks, so no
run is planned twice (several processes enqueueing the same trials run them twice: optuna#982,
#2925); the points are the study's own Sobol points, never Optuna's QMC sampler (its counter is
not safe across workers). Workers claim a WAITING trial by Optuna's own atomic WAITING -> RUNNING
transition (the one `Study.ask` uses), heartbeat while they train, and set COMPLETE or FAIL.

A run whose worker died is failed-stale (Optuna's heartbeats: `fail_stale_trials`) and re-queued
as a new WAITING trial with `attempt + 1` by the one process that won the RUNNING -> FAIL
transition; past `max_retries` a final FAIL row with the reason is added instead. Optuna never
reaps a RUNNING trial that wrote no heartbeat (a worker killed between its claim and its first
beat): `reap` does, after the grace period, and at once for a worker of this host whose process
is gone. The latest row of a key is the run's state; a FAIL row is final only with an `error`.

Storage URLs: `sqlite:///DIR/study.db` by default (nothing to install; one machine: SQLite over
NFS corrupts, optuna#815), `postgresql://...` or any SQLAlchemy URL Optuna accepts on a cluster.
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import TrialState, create_trial

from runner.errors import ConfigError
from runner.runs import status_of, write_failed
from runner.study.records import RunRecord

HEARTBEAT = 10  # seconds between a worker's heartbeats (Optuna wants an integer)
GRACE = 3  # a run is stale after GRACE heartbeats missed, and no sooner than MIN_GRACE s:
MIN_GRACE = 10  # a loaded machine delays a beat by seconds (a false "dead" costs a re-claim)
MAX_RETRIES = 3  # a dead worker's run is re-queued this often, then failed with the reason
PREFIX = "tricks:"  # the system attrs this module owns

optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_url(out: Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def study_name(out: Path) -> str:
    """The ledger's name of the study run into DIR: its absolute path (unique in a storage that
    holds many studies; `tricks worker --study NAME` names it)."""
    return str(Path(out).resolve())


def grace_of(heartbeat: int) -> int:
    return max(MIN_GRACE, int(GRACE * heartbeat))


def storage_of(url: str, heartbeat: int = HEARTBEAT, on_stale=None) -> RDBStorage:
    kw = {}
    if url.startswith("sqlite"):  # workers write at once: wait for the lock, do not fail
        kw = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since 2.9
            warnings.simplefilter("ignore")
            return RDBStorage(
                url,
                engine_kwargs=kw,
                heartbeat_interval=max(1, int(heartbeat)),
                grace_period=grace_of(heartbeat),
                heartbeat_stale_trial_callback=on_stale,
            )
    except Exception as e:  # a bad URL, a server not up, a driver missing: one line
        raise ConfigError(
            "--storage",
            f"cannot open {url!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            "sqlite:///PATH/study.db, postgresql://USER@HOST/DB, any URL Optuna accepts",
        )


def _state(t) -> str:
    if t.state == TrialState.WAITING:
        return "queued"
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.COMPLETE:
        return "completed"
    return "failed" if t.user_attrs.get("error") else "stale"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive


class Ledger:
    """A study's ledger. `root`: the study dir as this machine sees it (run dirs under it)."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        create: bool = False,
        heartbeat: int = HEARTBEAT,
        max_retries: int = MAX_RETRIES,
        root: Path | None = None,
    ):
        self.url, self.name, self.max_retries = url, name, max_retries
        self.heartbeat = max(1, int(heartbeat))
        self.grace = grace_of(self.heartbeat)
        self.storage = storage_of(url, self.heartbeat, self._on_stale)
        try:
            self.study = optuna.load_study(study_name=name, storage=self.storage)
        except KeyError:
            if not create:
                raise ConfigError(
                    "--study", f"no study {name!r} in {url}", ", ".join(names(self.storage))
                )
            self.study = optuna.create_study(study_name=name, storage=self.storage)
        self.sid = self.study._study_id
        self.root = Path(root) if root else Path(self.meta("out") or ".")

    # -- study-level facts (system attrs) ------------------------------------------------------

    def meta(self, key: str, default=None):
        return self.storage.get_study_system_attrs(self.sid).get(PREFIX + key, default)

    def set_meta(self, key: str, value) -> None:
        self.storage.set_study_system_attr(self.sid, PREFIX + key, value)

    def all_meta(self) -> dict:
        attrs = self.storage.get_study_system_attrs(self.sid)
        return {k[len(PREFIX) :]: v for k, v in attrs.items() if k.startswith(PREFIX)}

    # -- rows ------------------------------------------------------------------------------------

    def rows(self, states=None) -> list:
        return self.storage.get_all_trials(self.sid, deepcopy=False, states=states)

    def runs(self) -> dict[str, RunRecord]:
        """key -> the run's record as its latest row says (status, result, error, attempt)."""
        latest = {}
        for t in self.rows():
            k = t.user_attrs.get("key")
            if k is not None and (k not in latest or t.number > latest[k].number):
                latest[k] = t
        out = {}
        for k, t in latest.items():
            rec = RunRecord.from_json(t.user_attrs["run"])
            st = _state(t)
            out[k] = rec.with_status(
                "running" if st == "stale" else st,  # re-queued in a moment (see reap)
                t.user_attrs.get("result"),
                t.user_attrs.get("error"),
                t.user_attrs.get("attempt", 0),
            )
        return out

    def enqueue(self, records: list[RunRecord], done: dict | None = None) -> int:
        """Add the runs whose key the ledger lacks (WAITING; COMPLETE for a key in `done`: key ->
        result, a run dir already completed). The coordinator's job only. Returns how many."""
        have = {t.user_attrs.get("key") for t in self.rows()}
        new, seen = [], set()
        for r in records:
            if r.key in have or r.key in seen:
                continue
            seen.add(r.key)
            attrs = {"key": r.key, "run": r.plan_json(), "attempt": 0}
            if done and r.key in done:
                attrs["result"] = done[r.key]
                v = done[r.key].get("value")  # Optuna wants a value on a COMPLETE row it adds
                v = float(v) if isinstance(v, (int, float)) and v == v else 0.0
                new.append(create_trial(state=TrialState.COMPLETE, value=v, user_attrs=attrs))
            else:
                new.append(create_trial(state=TrialState.WAITING, user_attrs=attrs))
        if new:
            self.study.add_trials(new)
        return len(new)

    def retry_failed(self, records: list[RunRecord]) -> int:
        """Queue again the runs of `records` whose latest row failed (a new invocation of the
        study retries its failed runs, as a re-run sweep does: a run that failed for a reason
        since fixed, or whose worker died too often, gets its chance). The coordinator's job."""
        runs = self.runs()
        again = [r for r in records if r.key in runs and runs[r.key].status == "failed"]
        self.study.add_trials(
            [
                create_trial(
                    state=TrialState.WAITING,
                    user_attrs={"key": r.key, "run": r.plan_json(), "attempt": 0},
                )
                for r in again
            ]
        )
        return len(again)

    # -- a worker's side ---------------------------------------------------------------------------

    def claim(self, worker: dict, pins: tuple = ()) -> tuple[int, RunRecord] | None:
        """Take the first WAITING run this worker may run (a pinned run only by its pin)."""
        for t in self.rows(states=(TrialState.WAITING,)):
            pin = t.user_attrs.get("run", {}).get("pin")
            if pin is not None and pin not in pins:
                continue
            try:
                if not self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            self.storage.record_heartbeat(t._trial_id)  # at once: no window without a beat
            self.storage.set_trial_user_attr(t._trial_id, "worker", worker)
            rec = RunRecord.from_json(t.user_attrs["run"])
            return t._trial_id, rec.with_status("running", attempt=t.user_attrs.get("attempt", 0))
        return None

    def beat(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)

    def finish(self, trial_id: int, status: str, result: dict, error: str | None = None) -> bool:
        """COMPLETE or FAIL (with `error`: a final failure). False if the row was reaped
        meanwhile (this worker was taken for dead: its re-queued copy is the run now)."""
        try:
            self.storage.set_trial_user_attr(trial_id, "result", result)
            if status != "completed":
                self.storage.set_trial_user_attr(trial_id, "error", error or status)
            v = result.get("value")
            values = [float(v)] if isinstance(v, (int, float)) and v == v else None
            state = TrialState.COMPLETE if status == "completed" else TrialState.FAIL
            return self.storage.set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def requeue(self, trial_id: int, error: str) -> None:
        """Give an interrupted run back to the queue (Ctrl-C: not the run's fault, no retry
        counted): this row FAIL with the reason, a WAITING copy after it."""
        t = self.storage.get_trial(trial_id)
        try:
            self.storage.set_trial_user_attr(trial_id, "error", error)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        attrs = {k: t.user_attrs[k] for k in ("key", "run", "attempt")}
        self.study.add_trial(create_trial(state=TrialState.WAITING, user_attrs=attrs))

    # -- reaping (any process may; exactly one re-queues each dead run) -------------------------

    def _on_stale(self, study, trial) -> None:
        """The RUNNING -> FAIL winner's callback: re-queue (attempt + 1) or fail for good."""
        attempt = int(trial.user_attrs.get("attempt", 0)) + 1
        w = trial.user_attrs.get("worker") or {}
        who = f"worker {w.get('id', '?')} on {w.get('host', '?')} (pid {w.get('pid', '?')})"
        attrs = {k: trial.user_attrs[k] for k in ("key", "run") if k in trial.user_attrs}
        if attempt <= self.max_retries:
            attrs["attempt"] = attempt
            self.study.add_trial(create_trial(state=TrialState.WAITING, user_attrs=attrs))
            return
        error = f"its worker died {attempt} times (last: {who}); not re-queued again"
        attrs.update(attempt=attempt, error=error, result={})
        self.study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs))
        self._write_failed(attrs.get("key"), error)

    def _write_failed(self, key: str | None, error: str) -> None:
        if key and status_of(self.root / key) != "completed":
            write_failed(self.root / key, error)

    def _fail_and_requeue(self, t) -> None:
        try:
            if self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                self._on_stale(self.study, self.storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def _beating(self) -> set[int]:
        from sqlalchemy import text  # Optuna's own table; it has no public query for it

        with self.storage.engine.connect() as c:
            return {r[0] for r in c.execute(text("SELECT trial_id FROM trial_heartbeats"))}

    def reap(self) -> None:
        """Re-queue the runs of dead workers: stale heartbeats (Optuna), RUNNING rows that never
        beat, rows of a worker on this host whose process is gone, stale FAIL rows whose
        re-queue was lost (the winner died between its FAIL and its callback)."""
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9
            warnings.simplefilter("ignore")
            fail_stale_trials(self.study)
        now, host = datetime.datetime.now(), socket.gethostname()
        grace = datetime.timedelta(seconds=self.grace)
        running = self.rows(states=(TrialState.RUNNING,))
        beating = self._beating() if running else set()
        for t in running:
            w = t.user_attrs.get("worker") or {}
            mine_dead = w.get("host") == host and w.get("pid") and not alive(int(w["pid"]))
            silent = (
                t._trial_id not in beating and t.datetime_start and now - t.datetime_start > grace
            )
            if mine_dead or silent:
                self._fail_and_requeue(t)
        latest = {}
        for t in self.rows():
            k = t.user_attrs.get("key")
            if k is not None and (k not in latest or t.number > latest[k].number):
                latest[k] = t
        for t in latest.values():
            stuck = t.state == TrialState.FAIL and not t.user_attrs.get("error")
            if stuck and t.datetime_complete and now - t.datetime_complete > grace:
                self._on_stale(self.study, t)

    # -- who is working ---------------------------------------------------------------------------

    def workers(self) -> list[dict]:
        """The workers seen within the grace period (each writes its `worker:ID` attr)."""
        now = time.time()
        return [
            v
            for k, v in self.all_meta().items()
            if k.startswith("worker:")
            and isinstance(v, dict)
            and now - v.get("seen", 0) < self.grace
        ]


def names(storage: RDBStorage) -> list[str]:
    """The tricks studies in a storage."""
    return [s.study_name for s in storage.get_all_studies() if (PREFIX + "out") in s.system_attrs]


class Beat:
    """A worker's heartbeat thread: the running row's heartbeat and the worker's `worker:ID`
    attr every `ledger.heartbeat` seconds (Optuna's HeartbeatThread covers the row only)."""

    def __init__(self, ledger: Ledger, me: dict):
        self.ledger, self.me, self.trial = ledger, me, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                t = self.trial
                if t is not None:
                    self.ledger.beat(t[0])
                self.ledger.set_meta(
                    f"worker:{self.me['id']}",
                    {**self.me, "seen": time.time(), "run": t[1] if t else None},
                )
            except Exception:  # a storage hiccup: the next beat retries (grace covers a few)
                pass
            self.stop.wait(self.ledger.heartbeat)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def running_study(url: str) -> str:
    """The one tricks study of a storage not done yet (`tricks worker` without --study)."""
    storage = storage_of(url)
    live = [
        s.study_name
        for s in storage.get_all_studies()
        if (PREFIX + "out") in s.system_attrs and s.system_attrs.get(PREFIX + "state") != "done"
    ]
    if len(live) != 1:
        raise ConfigError(
            "--study",
            f"{len(live) or 'no'} tricks studies running in {url}",
            ", ".join(live) or ", ".join(names(storage)) or "start one with tricks study",
        )
    return live[0]
