"""The study's typed records and its ledger, without training: JSON round trips, a key enqueued
once, claims in plan order with pins honoured, results and interruptions recorded, bad storage
and a missing ledger as one line (exit 2)."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, cli


def test_records_round_trip_through_json():
    from runner.stats import Verdict
    from runner.study.records import ArmPlan, ArmResult, RunRecord

    r = RunRecord(
        "runs/main/a/trial-03-seed-100",
        "main",
        "a",
        "tune",
        ("model=mlp", "seed=100"),
        100,
        {"optimizer.lr": 0.01},
        trial=3,
        label="main/a",
    )
    assert RunRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.replicate == 0 and r.run_dir.name == "trial-03-seed-100"
    done = r.with_status("completed", {"value": 0.5}, attempt=1)
    assert RunRecord.from_json(done.to_json()) == done and "status" not in done.plan_json()
    p = ArmPlan("slow@fgm", ("optimizer.lr=1e-6",), ("trainer.max_steps=120",), "fgm")
    assert ArmPlan.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert p["forced"] == ["trainer.max_steps=120"] and p["equal_compute_of"] == "fgm"
    # an arm's result from a committed study.json: the verdict read back as the enum
    study = json.loads((ROOT / "experiments" / "derived" / "study" / "study.json").read_text())
    arms = study.get("arms") or next(iter(study["by_workload"].values()))["arms"]
    name, rec = next((a, x) for a, x in arms.items() if x["verdict"] != "baseline")
    res = ArmResult.of_record("main", name, rec)
    assert isinstance(res.verdict, Verdict) and res.verdict == rec["verdict"]
    assert list(res.values) == rec["final"]["values"]
    assert ArmResult.from_json(json.loads(json.dumps(res.to_json()))) == res


def _ledger(tmp_path):
    from runner.study.ledger import Ledger
    from runner.study.records import LOCAL_PIN, RunRecord

    led = Ledger(f"sqlite:///{tmp_path / 'l.db'}", "s", create=True, heartbeat=1, root=tmp_path)
    recs = [
        RunRecord("runs/_cost/main/a/rep-0", "main", "a", "cost", (), 0, pin=LOCAL_PIN),
        RunRecord("runs/main/a/trial-00-seed-1", "main", "a", "tune", ("seed=1",), 1),
        RunRecord("runs/main/b/trial-00-seed-1", "main", "b", "tune", ("seed=1",), 1),
    ]
    return led, recs


def test_a_key_is_enqueued_once_and_claimed_in_plan_order_with_pins(tmp_path):
    led, recs = _ledger(tmp_path)
    assert led.enqueue(recs + recs[:1]) == 3 and led.enqueue(recs) == 0
    me = {"id": "w1", "host": "h", "pid": 1}
    tid, got = led.claim(me)  # not local worker 0: the pinned timing run is not its
    assert got.key == recs[1].key and got.status == "running"
    tid0, got0 = led.claim(me, ("local0",))
    assert got0.key == recs[0].key
    assert led.finish(tid, "completed", {"value": 0.75, "steps": 60})
    assert led.finish(tid0, "failed", {}, "non-finite loss")
    tid2, got2 = led.claim(me)
    led.requeue(tid2, "interrupted")  # Ctrl-C: back to the queue, no retry counted
    runs = led.runs()
    assert runs[recs[1].key].status == "completed" and runs[recs[1].key].result["value"] == 0.75
    assert runs[recs[0].key].status == "failed" and runs[recs[0].key].error == "non-finite loss"
    assert runs[recs[2].key].status == "queued" and runs[recs[2].key].attempt == 0
    assert led.claim(me)[1].key == recs[2].key and led.claim(me) is None
    assert led.finish(tid, "completed", {}) is False  # a finished row is never re-written
    # a new invocation retries the failed runs (as a re-run sweep does), not the completed
    assert led.retry_failed(recs) == 1 and led.runs()[recs[0].key].status == "queued"
    assert led.runs()[recs[1].key].status == "completed"


def test_bad_storage_and_a_missing_ledger_are_one_line(tmp_path):
    r = cli(["worker", "--storage", "nosuchdb://x/y"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: --storage: cannot open 'nosuchdb://x/y'")
    (tmp_path / "s.yaml").write_text(
        "baseline: a\narms: {a: []}\nsearch: {optimizer.lr: loguniform(1e-4, 1e-2)}\n"
        "budget: 1\ntune_seeds: [1]\nseeds: [2, 3]\nselect: val/acc\nmetric: test/acc\n"
    )
    r = cli(["study", "s.yaml", "--out", "out", "--status"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "no ledger in out" in r.stderr and not (tmp_path / "out").exists()
    led = tmp_path / "l.db"
    from runner.study.ledger import Ledger

    Ledger(f"sqlite:///{led}", "other", create=True)
    r = cli(["worker", "--storage", f"sqlite:///{led}"], cwd=tmp_path)
    assert r.returncode == 2 and "--study: no tricks studies running" in r.stderr


@pytest.mark.parametrize("n", [0, -1])
def test_bad_parallel_and_heartbeat_are_one_line(tmp_path, n):
    (tmp_path / "s.yaml").write_text("baseline: a\n")
    r = cli(["study", "s.yaml", "--heartbeat", str(n)], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr == f"error: --heartbeat: must be >= 1 second, got {n}\n"
