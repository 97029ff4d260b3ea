"""Early stopping (trainer.patience, trainer.min_delta): stop training when the selection metric
(trainer.select: val/acc, or val/f1 multi-label; higher is better) has not risen by more than
`min_delta` over its best so far for `patience` evaluations in a row. The rule of Keras's and
Lightning's `EarlyStopping` (mode max): the reference best moves only on an improvement larger
than `min_delta`, so a slow creep of small gains still runs out of patience.

A pure function of the evaluation rows (metrics.jsonl's, which checkpoints carry): a resumed run
recomputes where it stands from its rows and stops at the step an uninterrupted run stops at."""

from __future__ import annotations


def stop_step(values, patience: int, min_delta: float = 0.0) -> int | None:
    """The step of the evaluation at which `patience` evaluations in a row have not improved on
    the best value by more than `min_delta`; None while they have. `values`: (step, value) of
    every evaluation, in order. A NaN value counts as no improvement."""
    best, bad = None, 0
    for step, v in values:
        if best is None or v > best + min_delta:
            best, bad = v, 0
        else:
            bad += 1
            if bad >= patience:
                return step
    return None


def evaluations(rows, key: str) -> list[tuple[int, float]]:
    """(step, value of `key`) of the rows that hold an evaluation."""
    return [(r["step"], r[key]) for r in rows if key in r]
