"""`tricks study`: the verdict protocol (tune -> select -> confirm -> verdict), after MLCommons
AlgoPerf's external-tuning ruleset. See README "tricks study" and docs/study.md.

    from runner.study import load, execute
    study = execute(load("experiments/flooding/study.yaml", ["trainer.device=cpu"]), "out/", 2)

`load(path, overrides)` parses and validates the study file (every bad input: one ConfigError
line, nothing run); `execute(study, out, parallel, only=None, storage=None)` runs it into `out`
(resuming what is there; `only`: a subset of its workloads, the rest kept from DIR's study.json;
`storage`: the ledger's URL) and returns study.json's content; `report_only(out)` re-makes
the report from `out`.

study.json (contract, issue 16; extra keys are additions):

    {"name", "description", "study_file", "overrides": [...],
     "baseline", "select", "metric", "higher_better" (for metric), "select_higher_better",
     "budget", "tune_seeds", "seeds", "search": {key: range}, "arm_search": {arm: {key: range}},
     "commit", "dirty" (at the end), "machine": {"cpu", "cpu_capability", "cores", "torch",
     "python", "gpu"} (at the end: float kernels differ between CPUs, so numbers repeat bit for
     bit only on the machine that made them),
     "invocations": [{"commit", "dirty", "started", "machine"}] (each start of the study on DIR:
     a resumed study may span commits and machines),
     "equal_compute": bool, "compare": [[arm, arm], ...] (arm against arm), "target":
     {"key", "value"} | null,
     "workloads": [names],
     "arms": {ARM: {...}}                   # one workload: at the top
     "by_workload": {W: {"arms": {ARM: {...}},    # several workloads: per workload instead,
                         "run": {"commit", "dirty", "finished", "machine"}}}  # who made W's
     "workloads_not_run": [names]           # several: not run yet (`--workloads` runs a subset;
                                            # the others keep DIR's earlier records; "dirty" is
                                            # true if any workload's record is)
     "replicates", "seeds_per_replicate", "vary_data", "split": {W: key}, "aa", "aa_arm",
     "controls": [arms], "calibration": {"arm", "workloads": [{"workload", "diff",
     "verdict"}], "flagged"}       # issue 32 (absent in a study.json written before it)
    }

    ARM: {"overrides": [...], "space": {key: range},
          "equal_compute_of": "fgm" | absent     (arm "<baseline>@fgm": the baseline given fgm's
                                                  measured compute, more steps)
          "trials": [{"index", "params", "select_value" (mean over tune seeds; null when a
                      tune run failed: worst), "status" ("completed" | "failed"),
                      "run_dir", "run_dirs", "errors": [...]}],
          "chosen": {params} | null, "chosen_trial": index | null,
          "edge": [{"key", "value", "range", "side": "low" | "high"}],
          "final": {"n", "mean", "ci95": [lo, hi], "values", "seeds", "failed",
                    "run_dirs", "failed_runs": [{"run_dir", "error"}]},
          "diff": {"mean", "ci95", "p", "p_holm", "test", "mde", "se", "df", + issue 32's
                   "method", "replicates", "seeds_per_replicate", "pairs", "var_between",
                   "var_within", "replicate_diffs", "family", "family_size", "alpha_mde",
                   "failed", "runs", "conditional", "provisional", "qualified"} | null,
          "verdict": str,           # on p_holm: Holm in its family across all workloads
          "replicates": [{"replicate", "search_seed", "tune_seeds", "seeds", "data", "chosen",
                          "chosen_trial", "select_value", "edge", "final"}] | absent (one),
          "passes": {"per_step", "facts", "source"},  # declared forward+backward passes
          "equal_compute": {"vs": "<baseline>@ARM", "diff": {...}, "verdict"} | absent
                                    # its own Holm family: trick vs its equal-compute baseline
          "versus": [{"vs": ARM2, "diff": {...}, "verdict", "family"}] | absent
                                    # the study file's compare: pairs (ARM, ARM2), Holm across
                                    # those pairs only
          "cost": {"sec_per_step", "ratio", "source": "interleaved" | "confirmation runs"},
          "target": {"key", "value", "steps": [...], "seconds": [...], "reached", "n",
                     "mean_steps", "mean_seconds"} | absent}

Run dirs are relative to the study dir (the folder holding study.json):
runs/WORKLOAD/ARM[/rep-R]/trial-II-seed-S (rep-R with several replicates),
runs/WORKLOAD/ARM[/rep-R]/confirm-trial-II-seed-S (II: the chosen trial),
runs/_cost/WORKLOAD/ARM/rep-R (the interleaved timing runs), runs/_logs/ (the workers'
logs) and runs/_locks/ (one lock file per run: one process in a run dir at a time);
WORKLOAD is "main" with one workload.

The study's ledger (runner.study.ledger: its plan, every run's status and result) is an Optuna
storage, DIR/study.db (SQLite) unless `storage=` names another; study.json is its export. The
modules: records (typed records), ledger (the storage), plan (the runs of each phase), worker
(the process that trains runs), protocol (the coordinator: phases, local workers), export
(study.json and the report), inputs (DIR's lock, pinned inputs), status (`--status`), slurm.
"""

from __future__ import annotations

from pathlib import Path


def load(path, overrides=()):
    # the package's entry stays light (the CLI reads its docs): optuna and the rest when used
    from runner.study.protocol import load as _load

    return _load(path, list(overrides))


def execute(
    study,
    out,
    parallel: int = 1,
    progress="auto",
    only=None,
    storage=None,
    heartbeat=10,
    slurm=None,
) -> dict:
    # the package's entry stays light (the CLI reads its docs): optuna and the rest when used
    from runner.study.protocol import execute as _execute

    return _execute(study, out, parallel, progress, only, storage, heartbeat, slurm)


def report_only(out) -> list:
    # the package's entry stays light (the CLI reads its docs): optuna and the rest when used
    from runner.study.protocol import report_only as _report_only

    return _report_only(out)


def load_name(path) -> str:
    """The default study-dir name of a study file: its folder for .../NAME/study.yaml."""
    p = Path(path)
    return p.parent.name if p.name == "study.yaml" else p.stem
