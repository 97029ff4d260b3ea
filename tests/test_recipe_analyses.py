"""experiments/<name>/analysis.py: each recipe's own analysis, called as `tricks study` calls it
(`analyse(study, study_dir) -> markdown`) on a synthetic study.json whose run dirs are fake
(metrics.jsonl + summary.json + config.yaml, as runner.compare reads them)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT


def analysis(name: str):
    spec = importlib.util.spec_from_file_location(
        f"analysis_{name}", ROOT / "experiments" / name / "analysis.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_run(
    study_dir: Path, rel: str, rows: list[dict], summary: dict, config: dict | None = None
):
    d = study_dir / rel
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(yaml.safe_dump(config or {"seed": 0}))
    return rel


def table_row(md: str, first_cell: str, after: str = "") -> list[str]:
    """The cells of the first table row starting with `first_cell` (after the text `after`)."""
    text = md.split(after, 1)[1] if after else md
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def trial(study_dir, rel, lr, val, extra=None):
    status = "completed" if val is not None else "failed"
    fake_run(
        study_dir,
        rel,
        [{"step": 10, "val/acc": val}] if val is not None else [],
        {"status": status, "best/val/acc": val}
        if val is not None
        else {"status": "failed", "error": "non-finite gradients"},
    )
    return {
        "params": {"optimizer.lr": lr, **(extra or {})},
        "select_value": val,
        "status": status,
        "run_dir": rel,
        "run_dirs": [rel],
    }


# -- clipping ------------------------------------------------------------------------------


def test_clipping_counts_divergence_per_lr_region_and_steps_to_target(tmp_path):
    A = analysis("clipping")
    none_trials = [
        trial(tmp_path, "runs/w/none/t0", 0.1, 0.60),
        trial(tmp_path, "runs/w/none/t1", 0.3, 0.63),
        trial(tmp_path, "runs/w/none/t2", 1.0, None),
        trial(tmp_path, "runs/w/none/t3", 2.0, None),
    ]
    norm_trials = [
        trial(tmp_path, "runs/w/norm/t0", 0.1, 0.58, {"clip.max_norm": 0.5}),
        trial(tmp_path, "runs/w/norm/t1", 0.3, 0.61, {"clip.max_norm": 1.0}),
        trial(tmp_path, "runs/w/norm/t2", 1.0, 0.64, {"clip.max_norm": 0.25}),
        trial(tmp_path, "runs/w/norm/t3", 2.0, None, {"clip.max_norm": 4.0}),
    ]
    # confirmation runs: train/loss falls 2.0 -> 0.5 (logged every 5 steps); one seed diverges
    losses = [2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.5]
    ok_rows = [{"step": 5 * (i + 1), "train/loss": v} for i, v in enumerate(losses)]
    conf = {
        a: [
            fake_run(
                tmp_path,
                f"runs/w/{a}/confirm-seed-{s}",
                ok_rows,
                {"status": "completed", "test/acc": 0.6 + 0.01 * s},
            )
            for s in (0, 1)
        ]
        for a in ("none", "norm")
    }
    conf["none"].append(
        fake_run(
            tmp_path,
            "runs/w/none/confirm-seed-2",
            [{"step": 5, "train/loss": 2.0}],
            {"status": "failed", "error": "non-finite gradients"},
        )
    )
    study = {
        "baseline": "none",
        "select": "val/acc",
        "metric": "test/acc",
        "arms": {
            "none": {
                "trials": none_trials,
                "chosen": {"optimizer.lr": 0.3},
                "final": {"run_dirs": conf["none"]},
            },
            "norm": {
                "trials": norm_trials,
                "chosen": {"optimizer.lr": 1.0, "clip.max_norm": 0.25},
                "final": {"run_dirs": conf["norm"]},
            },
        },
    }
    md = A.analyse(study, tmp_path)
    # lr 0.1, 0.3 stable; 1.0, 2.0 diverging (>= 0.7)
    assert table_row(md, "none", "Tuning trials") == [
        "none",
        "0/2",
        "0.6300",
        "0/0",
        "n/a",
        "2/2",
        "n/a",
    ]
    assert table_row(md, "norm", "Tuning trials") == [
        "norm",
        "0/2",
        "0.6100",
        "0/0",
        "n/a",
        "1/2",
        "0.6400",
    ]
    # the mean of 3 consecutive losses first <= 1.0 at (1.0, 0.9, 0.8): step 30
    assert A.steps_to(ok_rows, "train/loss", 1.0) == 30
    row = table_row(md, "none", "Confirmation runs")
    assert row[1] == "lr 0.3" and row[2] == "1/3" and row[3] == "2/3" and row[4] == "30 ± 0"
    assert row[5].startswith("0.6050")  # mean of 0.60, 0.61 (the failed seed excluded)
    assert table_row(md, "norm", "Confirmation runs")[1:3] == ["lr 1, max_norm 0.25", "0/2"]
    assert re.search(r"!\[[^]]*\]\(clipping_main\.png\)", md)
    assert (tmp_path / "clipping_main.png").stat().st_size > 0


# -- derived: accumulation paired with the batch it equals ---------------------------------


def test_derived_pairs_accumulation_with_the_baseline_at_the_same_lr_and_seed():
    A = analysis("derived")

    def arm(vals, lrs, final):
        return {
            "trials": [
                {"params": {"optimizer.lr": lr}, "select_value": v} for lr, v in zip(lrs, vals)
            ],
            "final": {"seeds": [0, 1, 2], "values": final},
        }

    lrs = [0.001, 0.01, 0.1]
    study = {
        "baseline": "none",
        "select": "val/acc",
        "metric": "test/acc",
        "by_workload": {
            "mlp_d0": {
                "arms": {
                    "none": arm([0.50, 0.60, 0.55], lrs, [0.60, 0.62, 0.64]),
                    "accum4x25": arm([0.50, 0.602, None], lrs, [0.60, 0.621, 0.64]),
                    "lookahead": arm([0.1, 0.2, 0.3], lrs, [0.5, 0.5, 0.5]),
                }
            }
        },
    }
    md = A.analyse(study, Path("."))
    assert table_row(md, "0.01")[1:] == ["0.6000", "0.6020", "+0.0020"]
    assert table_row(md, "0.1")[1:] == ["0.5500", "failed", "n/a"]
    assert "Largest |difference| over the paired trials: 0.0020." in md
    assert "seed 0 +0.0000, seed 1 +0.0010, seed 2 +0.0000" in md
    assert "standard deviation there: 0.0200." in md  # sd of 0.60, 0.62, 0.64


# -- lion vs adamw -------------------------------------------------------------------------


def real_config(overrides: list[str]) -> dict:
    from runner.config import compose, to_container

    return to_container(compose(overrides))


def test_lion_sensitivity_lr_ratio_and_measured_state_memory(tmp_path):
    A = analysis("lion_vs_adamw")
    arms = {}
    for opt, lrs in (("adamw", (0.003, 0.03, 0.3)), ("lion", (0.003, 0.03, 0.3))):
        ts = [
            trial(
                tmp_path,
                f"runs/mlp/{opt}/t{i}",
                lr,
                0.5 + 0.05 * i if opt == "adamw" else 0.7 - 0.05 * i,
                {"optimizer.weight_decay": 0.1},
            )
            for i, lr in enumerate(lrs)
        ]
        d = fake_run(
            tmp_path,
            f"runs/mlp/{opt}/confirm-seed-0",
            [],
            {"status": "completed"},
            real_config(["model=mlp", f"optimizer={opt}"]),
        )
        best = max(ts, key=lambda t: t["select_value"])
        arms[opt] = {"trials": ts, "chosen": best["params"], "final": {"run_dirs": [d]}}
    study = {
        "baseline": "adamw",
        "select": "val/acc",
        "metric": "test/acc",
        "by_workload": {"mlp": {"arms": arms}},
    }
    md = A.analyse(study, tmp_path)
    assert "### mlp" in md
    # AdamW's best trial is lr 0.3, Lion's lr 0.003: ratio 100
    assert "adamw 0.3; lion 0.003 (adamw / lion = 1e+02" in md
    # trials sorted by lr within each arm, failed ones named
    trials_md = md.split("Optimizer-state memory")[0]
    rows = [line for line in trials_md.splitlines() if line.startswith("| lion | ")]
    assert [r.split("|")[2].strip() for r in rows] == ["0.003", "0.03", "0.3"]
    # measured on the real MLP: AdamW keeps two buffers per parameter, Lion one
    assert table_row(md, "adamw", "Optimizer-state memory")[3] == "2.00×"
    assert table_row(md, "lion", "Optimizer-state memory")[3] == "1.00×"
    assert (tmp_path / "sensitivity_mlp.png").is_file()


def test_lion_memory_says_why_when_the_model_cannot_be_built(tmp_path):
    A = analysis("lion_vs_adamw_tweets")  # loads the mnist1d recipe's analysis
    d = fake_run(
        tmp_path, "runs/main/adamw/confirm-seed-0", [], {"status": "completed"}, {"seed": 0}
    )
    study = {
        "arms": {
            "adamw": {"trials": [], "chosen": None, "final": {"run_dirs": [d]}},
            "lion": {"trials": [], "chosen": None, "final": {"run_dirs": []}},
        }
    }
    md = A.analyse(study, tmp_path)
    assert table_row(md, "adamw", "Optimizer-state memory")[1] == "n/a"
    assert (
        table_row(md, "lion", "Optimizer-state memory")[3]
        == "no run config to build the model from"
    )
    assert "fewer than two optimizers completed a trial" in md


# -- rdrop vs adversarial: the cost table ---------------------------------------------------


@pytest.mark.parametrize("recipe", ["rdrop_vs_adversarial", "rdrop_vs_adversarial_tweets"])
def test_cost_table_reads_interleaved_rounds_and_the_equal_compute_pair(tmp_path, recipe):
    A = analysis(recipe)
    for arm, secs in (("none", (0.9, 1.0, 1.2)), ("pgd", (3.0, 3.1, 3.3))):
        for i, s in enumerate(secs):
            fake_run(
                tmp_path,
                f"runs/_cost/cnn/{arm}/rep-{i}",  # where runner.study.cost puts them
                [],
                {"status": "completed", "train_seconds": s * 100, "steps": 100},
            )
    fake_run(tmp_path, "runs/_cost/cnn/rdrop/rep-0", [], {"status": "failed", "error": "x"})
    # the uncounted warm-up run is not a round
    fake_run(
        tmp_path,
        "runs/_cost/cnn/none/rep-warmup",
        [],
        {"status": "completed", "train_seconds": 500, "steps": 100},
    )
    arms = {
        "none": {"cost": {"sec_per_step": 1.0, "ratio": 1.0, "source": "interleaved"}},
        "pgd": {
            "cost": {"sec_per_step": 3.1, "ratio": 3.1, "source": "interleaved"},
            "equal_compute": {
                "vs": "none@pgd",
                "verdict": "worse",
                "diff": {"mean": -0.02, "ci95": [-0.03, -0.01], "p": 0.004, "p_holm": 0.008},
            },
        },
        "none@pgd": {
            "equal_compute_of": "pgd",
            "overrides": ["trainer.max_steps=13020"],
            "cost": {"sec_per_step": 1.0, "ratio": 1.0, "source": "interleaved"},
        },
        "rdrop": {"cost": {"sec_per_step": 1.05, "ratio": 1.05, "source": "confirmation runs"}},
    }
    # several workloads, nested under `workloads` here (`by_workload` in the lion test): both read
    md = A.analyse({"baseline": "none", "workloads": {"cnn": {"arms": arms}}}, tmp_path)
    assert "### cnn" in md
    assert table_row(md, "none")[1:3] == ["1000.00 (900.0, 1000.0, 1200.0)", "1.00×"]
    pgd = table_row(md, "pgd")
    assert pgd[1] == "3100.00 (3000.0, 3100.0, 3300.0)" and pgd[2] == "3.10×"
    assert pgd[4:9] == ["none@pgd", "13020 steps", "-0.0200 [-0.0300, -0.0100]", "0.008", "worse"]
    # no completed round: the study's own figure; under 1.1x: no equal-compute baseline
    rd = table_row(md, "rdrop")
    assert rd[1] == "1050.00" and rd[3] == "confirmation runs" and rd[4].startswith("none (within")
    assert not any(line.startswith("| none@pgd |") for line in md.splitlines())
    # one named workload: no heading, the rounds read from under its name (runs/_cost/cnn/...)
    one = A.analyse({"baseline": "none", "workloads": ["cnn"], "arms": arms}, tmp_path)
    assert "###" not in one and table_row(one, "none")[1].endswith("(900.0, 1000.0, 1200.0)")
