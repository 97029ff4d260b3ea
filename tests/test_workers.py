"""A study's ledger and its workers (issue 33), as a user runs them (subprocesses), with the
SQLite default and a real PostgreSQL server started here (skipped, with the reason, where
Debian's postgresql is not installed): a coordinator and two `tricks worker` processes, one of
them SIGKILLed mid-run, reach the verdicts of one process with no run lost or trained twice; the
coordinator SIGKILLed between phases and restarted; a second coordinator refused; `--status`
while it runs; a RUNNING run that never beat is reaped; retries end in a failed run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, cli

ENV = {"OMP_NUM_THREADS": "1"}
STUDY = {
    "common": [
        "model=mlp",
        "model.hidden=32",
        "trainer.max_steps=40",
        "trainer.eval_every=20",
        "trainer.batch_size=32",
        "dataset.num_samples=1500",
        "dataset.val_size=200",
    ],
    "baseline": "slow",
    # the slow arm's runs are long and checkpoint often: a kill lands mid-run, after a checkpoint
    "arms": {
        "slow": [
            "optimizer.lr=1e-6",
            "trainer.max_steps=400",
            "trainer.eval_every=200",
            "trainer.checkpoint_every=20",
        ],
        "good": [],
    },
    "search": {"optimizer.weight_decay": "uniform(0.0, 0.01)"},
    "budget": 1,
    "tune_seeds": [100],
    "seeds": [0, 1],
    "select": "val/acc",
    "metric": "test/acc",
}
N_TUNE = 2 * 1  # arms x budget x tune seeds
N_RUNS = N_TUNE + 2 * 2  # + arms x confirmation seeds


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").is_file():
            return d
    return None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a Unix socket in a temp dir (as the `postgres` user when root)."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver) is not installed")
    bin_ = _pg_bin()
    if bin_ is None:
        pytest.skip("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
    d = Path(tempfile.mkdtemp(prefix="tricks-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        shutil.chown(d, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = 54329
    r = subprocess.run(
        [*as_pg, str(bin_ / "initdb"), "-D", str(d / "data"), "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"initdb failed: {r.stderr.strip()[-200:]}")
    opts = f"-k {d} -c listen_addresses='' -p {port}"
    r = subprocess.run(
        [*as_pg, str(bin_ / "pg_ctl"), "-D", str(d / "data"), "-o", opts, "-l", str(d / "log")]
        + ["-w", "start"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"pg_ctl start failed: {r.stderr.strip()[-200:]}")
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={d}&port={port}"
    finally:
        subprocess.run(
            [*as_pg, str(bin_ / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(d, ignore_errors=True)


def _write(d: Path) -> None:
    (d / "s.yaml").write_text("# a tiny ledger study\n" + yaml.safe_dump(STUDY, sort_keys=False))


def values(s: dict) -> dict:
    return {
        a: (
            [(t["params"], t["select_value"], t["status"]) for t in r["trials"]],
            r["chosen"],
            r["final"]["values"],
            r["final"]["seeds"],
            r["diff"],
            str(r["verdict"]),
        )
        for a, r in s["arms"].items()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study run by one process (one local worker), the SQLite default."""
    d = tmp_path_factory.mktemp("ref")
    _write(d)
    r = cli(["study", "s.yaml", "--out", "out", "--heartbeat", "1"], cwd=d, env=ENV, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((d / "out" / "study.json").read_text())


def _popen(args: list[str], cwd: Path, log: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    with open(cwd / log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=env, stdout=f, stderr=f
        )


_OPEN: dict = {}


def _ledger(url: str, out: Path):
    """The study's ledger, opened once per test (opening checks the schema: not every poll)."""
    from runner.study.ledger import Ledger, study_name

    if (url, out) not in _OPEN:
        _OPEN[(url, out)] = Ledger(url, study_name(out), root=out)
    return _OPEN[(url, out)]


def _wait(cond, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _rows_by_key(url: str, out: Path) -> dict[str, list[str]]:
    from optuna.trial import TrialState

    by: dict[str, list[str]] = {}
    for t in _ledger(url, out).rows():
        by.setdefault(t.user_attrs["key"], []).append(t.state)
    return {
        k: ["COMPLETE" if s == TrialState.COMPLETE else s.name for s in v] for k, v in by.items()
    }


def _no_run_lost_or_twice(d: Path, url: str) -> dict:
    out = d / "out"
    dirs = [p for p in (out / "runs" / "main").glob("*/*") if p.is_dir()]
    assert len(dirs) == N_RUNS  # every run dir once: none lost, none made twice
    rows = _rows_by_key(url, out)
    assert sorted(rows) == sorted(str(p.relative_to(out)) for p in dirs)
    for key, states in rows.items():  # one completed row a run; a failed row only before it
        assert states.count("COMPLETE") == 1 and states[-1] == "COMPLETE", (key, states)
    return rows


def _a_run_mid_way(url: str, out: Path):
    """A RUNNING row whose run dir holds a checkpoint and no summary yet (its worker's pid)."""
    try:
        rows = _ledger(url, out).rows()
    except Exception:  # the coordinator has not made the ledger yet
        return None
    for t in rows:
        if t.state.name != "RUNNING" or not t.user_attrs.get("worker"):
            continue
        rd = out / t.user_attrs["key"]
        if (rd / "checkpoints" / "last.pt").is_file() and not (rd / "summary.json").exists():
            return t
    return None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_one_killed_mid_run_give_the_one_process_verdicts(
    backend, reference, tmp_path, request
):
    """The coordinator with no local worker (--parallel 0) and two `tricks worker` processes;
    one worker SIGKILLed mid-run: its run is re-queued (a failed-stale row, then a new one),
    resumed from its checkpoint by the other worker, and study.json equals one process's."""
    _write(tmp_path)
    out = tmp_path / "out"
    url = request.getfixturevalue("postgres") if backend == "postgresql" else None
    url = url or f"sqlite:///{out.resolve() / 'study.db'}"
    from runner.study.ledger import study_name

    store = ["--storage", url, "--heartbeat", "1"]
    args = ["study", "s.yaml", "--out", "out", "--parallel", "0", *store]
    coord = _popen(args, tmp_path, "c.log")
    _wait(lambda: _ledger_ready(url, out), 120, "the ledger")
    work = ["worker", *store, "--study", study_name(out)]
    workers = [_popen(work, tmp_path, f"w{k}.log") for k in range(2)]
    t = None
    try:
        seen = [None]

        def caught():
            seen[0] = _a_run_mid_way(url, out)
            return seen[0] is not None or coord.poll() is not None

        _wait(caught)
        t = seen[0]
        assert t is not None, "no run was caught mid-way"
        victim = next(w for w in workers if w.pid == t.user_attrs["worker"]["pid"])
        os.kill(victim.pid, signal.SIGKILL)
        assert coord.wait(300) == 0, (tmp_path / "c.log").read_text()[-3000:]
    finally:
        for p in [coord, *workers]:
            if p.poll() is None:
                p.kill()
            p.wait()
    s = json.loads((out / "study.json").read_text())
    assert values(s) == values(reference)
    rows = _no_run_lost_or_twice(tmp_path, url)
    key = t.user_attrs["key"]
    assert rows[key] == ["FAIL", "COMPLETE"]  # the killed attempt, then its re-queued copy
    summ = json.loads((out / key / "summary.json").read_text())
    assert summ["status"] == "completed" and summ["resumed"] is True


def _ledger_ready(url: str, out: Path) -> bool:
    try:
        return len(_ledger(url, out).rows()) > 0
    except Exception:
        return False


def test_coordinator_killed_between_phases_restarts_refuses_a_second_and_shows_status(
    reference, tmp_path
):
    """SQLite default: while the coordinator tunes, `--status` reports the ledger and a second
    coordinator is refused (one line); SIGKILLed once tuning is done, the restarted coordinator
    re-queues its dead worker's run, confirms, and gives the one-process study."""
    _write(tmp_path)
    out = tmp_path / "out"
    url = f"sqlite:///{out.resolve() / 'study.db'}"
    coord = _popen(["study", "s.yaml", "--out", "out", "--heartbeat", "1"], tmp_path, "c.log")
    try:
        _wait(lambda: _ledger_ready(url, out), 120, "the ledger")
        _wait(lambda: _a_run_mid_way(url, out) is not None or coord.poll() is not None)
        r = cli(["study", "s.yaml", "--out", "out", "--status"], cwd=tmp_path, env=ENV)
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if x.startswith("tune     main/slow"))
        assert sum(int(n) for n in line.split()[2:]) == 1  # its one tune run, in some state
        assert f"of {N_RUNS} planned" in r.stdout and "workers alive: 1" in r.stdout
        assert "ETA: " in r.stdout and f"coordinator: pid {coord.pid} on " in r.stdout
        r = cli(["study", "s.yaml", "--out", "out"], cwd=tmp_path, env=ENV)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "in use by another tricks study" in r.stderr

        def tuned():
            runs = _ledger(url, out).runs().values()
            tune = [x for x in runs if x.phase == "tune"]
            return len(tune) == N_TUNE and all(x.status in ("completed", "failed") for x in tune)

        _wait(lambda: tuned() or coord.poll() is not None, 240, "the tuning")
        coord.send_signal(signal.SIGKILL)
        coord.wait()
    finally:
        if coord.poll() is None:
            coord.kill()
    assert not (out / "study.json").exists(), "the kill must land before the study ends"
    r = cli(
        ["study", "s.yaml", "--out", "out", "--heartbeat", "1"], cwd=tmp_path, env=ENV, timeout=900
    )
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((out / "study.json").read_text())
    assert values(s) == values(reference) and len(s["invocations"]) == 2
    _no_run_lost_or_twice(tmp_path, url)


def _one_run_ledger(tmp_path: Path, max_retries: int):
    from runner.study.ledger import Ledger
    from runner.study.records import RunRecord

    url = f"sqlite:///{tmp_path / 'l.db'}"
    led = Ledger(url, "t", create=True, heartbeat=1, max_retries=max_retries, root=tmp_path)
    rec = RunRecord("runs/main/a/trial-00-seed-1", "main", "a", "tune", ("seed=1",), 1)
    assert led.enqueue([rec, rec]) == 1 and led.enqueue([rec]) == 0  # a key once
    return led, rec


def test_a_running_run_that_never_beat_is_requeued_then_failed_with_the_reason(tmp_path):
    """Optuna reaps only a RUNNING trial with a stale heartbeat: a worker killed between its
    claim and its first beat leaves one with none. The ledger re-queues it after the grace
    period (attempt 1), and past max_retries records the run failed, with the reason, also in
    its run dir's summary.json."""
    from optuna.trial import TrialState

    led, rec = _one_run_ledger(tmp_path, max_retries=1)
    led.grace = 1
    for attempt in (1, 2):
        t = led.rows(states=(TrialState.WAITING,))[0]
        assert led.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
        who = {"id": "w", "host": "elsewhere", "pid": 1}
        led.storage.set_trial_user_attr(t._trial_id, "worker", who)
        led.reap()
        assert led.runs()[rec.key].status == "running"  # within the grace period: left alone
        time.sleep(1.3)
        led.reap()
        got = led.runs()[rec.key]
        if attempt == 1:
            assert got.status == "queued" and got.attempt == 1
    assert got.status == "failed" and got.attempt == 2
    assert "its worker died 2 times" in got.error and "elsewhere" in got.error
    summ = json.loads((tmp_path / rec.key / "summary.json").read_text())
    assert summ["status"] == "failed" and "died 2 times" in summ["error"]
    assert [t.state.name for t in led.rows()] == ["FAIL", "FAIL", "FAIL"]


def test_a_live_coordinator_elsewhere_refuses_a_second(tmp_path):
    """The file lock guards DIR on one machine; the ledger's lease guards the study across
    machines (a coordinator on another host, seen within the grace period)."""
    from runner.errors import ConfigError
    from runner.study.protocol import Coordinator

    led, _ = _one_run_ledger(tmp_path, 1)
    led.set_meta("coordinator", {"host": "node7", "pid": 4242, "seen": time.time()})
    c = Coordinator(None, tmp_path, 1, False, led)
    with pytest.raises(ConfigError, match="coordinated by another tricks study .pid 4242 on node7"):
        c.acquire()
    led.set_meta("coordinator", {"host": "node7", "pid": 4242, "seen": time.time() - 60})
    c.acquire()  # not seen for longer than the grace period: dead, taken over
    assert led.meta("coordinator")["pid"] == os.getpid()


def test_slurm_workers_sbatch_recipe_and_submitit_job(tmp_path):
    """The `sbatch --array` recipe renders (valid bash, one worker per task), SQLite is
    refused for SLURM, and the pickled job submitit sends to a node runs a worker (submitit's
    LocalExecutor runs it as a node would; a study already done: it returns at once)."""
    import submitit

    from runner.errors import ConfigError
    from runner.study.ledger import Ledger
    from runner.study.slurm import sbatch_text, submit_workers

    text = sbatch_text(3, "postgresql://u@db/tricks", "NAME", tmp_path, 10, ["partition=gpu"])
    assert "#SBATCH --array=0-2" in text and "#SBATCH --partition=gpu" in text
    want = f"runner.cli worker --storage postgresql://u@db/tricks --study NAME --root {tmp_path}"
    assert want in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    led = Ledger(f"sqlite:///{tmp_path / 'l.db'}", "s", create=True, heartbeat=1, root=tmp_path)
    with pytest.raises(ConfigError, match="--slurm: needs a storage every node reaches"):
        submit_workers(2, led)
    led.set_meta("state", "done")
    ex = submitit.LocalExecutor(folder=tmp_path / "submitit")
    jobs = submit_workers(1, led, executor=ex)
    assert [j.result() for j in jobs] == [0]
