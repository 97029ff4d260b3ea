"""csv: any local CSV / TSV / JSON (lines) / parquet table, read with Hugging Face `datasets`.

Columns: `label_column` (strings or integers; mapped to 0..K-1 in sorted order) and either
`text_column` (one column, or a list of two for sentence pairs; tokenized with the model's
tokenizer: a text model) or `feature_columns` (numeric columns, or `all` for every column but the
label: a vector input for model=mlp; standardized with the train split's mean and std unless
`standardize: false`).

Splits: `path` is one file (split by a permutation seeded by `split_seed`, never by the run seed:
`test_fraction`, `val_fraction`, the rest train) or a mapping of given splits
`{train: a.csv, val: b.csv, test: c.csv}` (`validation` is accepted for `val`); a missing val or
test split is carved from train by its fraction. `train_size` / `val_size` / `test_size` keep only
the first n of a split (for CPU runs).

Multi-label (multi-hot labels, for loss=multilabel_ce | bce): `label_columns` names several 0/1
columns (one per class, in that order: class names are the column names), or `label_delimiter`
splits `label_column`'s strings into a set of labels ("sports|politics"; an empty cell is a
row with no label; classes in sorted order). `y` is then a float 0/1 matrix (rows x classes).

Semi-supervised: `labeled_fraction` / `labeled_size` keep labels on a subset of the train split
seeded by `split_seed` (runner.data.base.semi_supervised); the other rows are unlabelled.

Rows with a missing label or an empty text are dropped (said in one line). Bad input (missing
file, empty file, missing column, one class, non-numeric feature) is one ConfigError line.

    tricks train dataset=csv dataset.path=reviews.csv dataset.text_column=review \\
        dataset.label_column=stars model=minilm
    tricks train dataset=csv dataset.path=table.parquet dataset.feature_columns=all model=mlp
    tricks train dataset=csv dataset.path=tags.csv dataset.feature_columns=all \\
        dataset.label_columns=[sports,politics,tech] loss=multilabel_ce
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner import CACHE_DIR
from runner.data import text as T
from runner.data.base import Data, semi_supervised
from runner.errors import ConfigError, check, in_range

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "validation": "val",
    "valid": "val",
    "dev": "val",
    "test": "test",
}


def quiet_datasets():
    import datasets  # the optional `text` extra, and slow: only csv/hf datasets need it

    # critical: datasets logs its own read errors; ours is the one line the user sees
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)
    datasets.utils.logging.disable_progress_bar()


def _check_file(p, key: str) -> Path:
    path = Path(os.path.expanduser(str(p)))
    if not path.exists():
        raise ConfigError(key, f"file not found: {path}")
    if path.is_dir():
        raise ConfigError(
            key, f"{path} is a folder; give a file (or use dataset=hf with dataset.name=FOLDER)"
        )
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(
            key, f"unknown file type {path.suffix!r} ({path.name})", ", ".join(sorted(FORMATS))
        )
    if path.stat().st_size == 0:
        raise ConfigError(key, f"{path} is empty")
    return path


def load_files(path) -> tuple[dict, dict]:
    """({'train'|'val'|'test': datasets.Dataset}, {split: file name}) from one file or a mapping
    of split files."""
    if path is None or path == "":
        raise ConfigError(
            "dataset.path",
            "required: a CSV/TSV/JSON/parquet file, or {train: FILE, val: FILE, test: FILE}",
        )
    if isinstance(path, dict):
        files = {}
        for k, v in path.items():
            check(k in SPLIT_NAMES, f"dataset.path.{k}", "unknown split", "train, val, test")
            files[SPLIT_NAMES[k]] = _check_file(v, f"dataset.path.{k}")
        check("train" in files, "dataset.path", "a mapping of splits needs a train file")
    else:
        files = {"train": _check_file(path, "dataset.path")}
    quiet_datasets()
    import datasets  # the optional `text` extra (see quiet_datasets)

    out = {}
    for split, f in files.items():
        fmt = FORMATS[f.suffix.lower()]
        kw = {"delimiter": "\t"} if f.suffix.lower() == ".tsv" else {}
        key = (
            "dataset.path"
            if len(files) == 1 and not isinstance(path, dict)
            else f"dataset.path.{split}"
        )
        try:
            ds = datasets.load_dataset(
                fmt,
                data_files={"train": str(f)},
                split="train",
                cache_dir=str(CACHE_DIR / "datasets"),
                **kw,
            )
        except Exception as e:
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            if "corresponds to no data" in msg:  # a header and no rows
                raise ConfigError(key, f"{f} has no rows")
            raise ConfigError(key, f"cannot read {f.name} as {fmt} ({msg})")
        if len(ds) == 0:
            raise ConfigError(key, f"{f} has no rows")
        out[split] = ds
    return out, {s: f.name for s, f in files.items()}


def _column(ds, name, key: str, where: str):
    if name not in ds.column_names:
        raise ConfigError(key, f"no column {name!r} in {where}", ", ".join(ds.column_names))
    return ds[name]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _multi_labels(ds, w: str, label_column, label_columns, label_delimiter) -> list:
    """Each row's labels as a tuple (None when missing): the 0/1 values of `label_columns`, or
    the set of names in `label_column` split at `label_delimiter`."""
    if label_columns is not None:
        cols = [list(_column(ds, c, "dataset.label_columns", w)) for c in label_columns]
        out = []
        for i, row in enumerate(zip(*cols)):
            if any(_missing(v) for v in row):
                out.append(None)
                continue
            for c, v in zip(label_columns, row):
                if isinstance(v, str) or v not in (0, 1):  # True/False, 0.0/1.0 are 0/1 too
                    raise ConfigError(
                        "dataset.label_columns",
                        f"column {c!r} in {w} has the "
                        f"value {v!r} (row {i + 1}); multi-hot columns hold 0 or 1",
                    )
            out.append(tuple(int(v) for v in row))
        return out
    vals = _column(ds, label_column, "dataset.label_column", w)
    # an empty cell (read as missing) is a row with no label: a valid multi-label row
    return [
        ()
        if _missing(v)
        else tuple(sorted({s.strip() for s in str(v).split(label_delimiter) if s.strip()}))
        for v in vals
    ]


def _encode_multi(labels: list, label_columns) -> tuple:
    """(float32 multi-hot matrix, class names) from `_multi_labels` tuples."""
    if label_columns is not None:
        return np.asarray(labels, dtype=np.float32).reshape(len(labels), -1), list(label_columns)
    names = sorted({n for row in labels for n in row})
    check(
        len(names) >= 2,
        "dataset.label_delimiter",
        f"found {len(names)} label name(s) ({', '.join(names) or 'none'}); need at least 2",
    )
    index = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(labels), len(names)), dtype=np.float32)
    for r, row in enumerate(labels):
        y[r, [index[n] for n in row]] = 1.0
    return y, names


def _check_multi_args(label_columns, label_delimiter):
    """label_columns as a list (or None), after checking the multi-label arguments."""
    if isinstance(label_columns, str):
        label_columns = [label_columns]
    check(
        label_columns is None or label_delimiter is None,
        "dataset.label_columns",
        "set label_columns (0/1 columns) or label_delimiter (one delimited column), not both",
    )
    check(
        label_columns is None
        or (len(label_columns) >= 2 and all(isinstance(c, str) for c in label_columns)),
        "dataset.label_columns",
        f"a list of at least two column names, got {label_columns!r}",
    )
    check(
        label_delimiter is None or (isinstance(label_delimiter, str) and label_delimiter),
        "dataset.label_delimiter",
        f"a non-empty string, got {label_delimiter!r}",
    )
    return label_columns


def _gather_rows(
    tables: dict, where: dict, cols: list, text_column, labels_of, dataset: str
) -> dict:
    """{split: (labels, texts per column | feature matrix)}, rows without a label or text
    dropped (said in one line)."""
    rows = {}
    dropped = 0
    for split, ds in tables.items():
        w = where[split]
        labels = labels_of(ds, w)
        if text_column is not None:
            data = [list(_column(ds, c, "dataset.text_column", w)) for c in cols]
            keep = [
                i
                for i, l in enumerate(labels)
                if not _missing(l) and all(not _missing(d[i]) and str(d[i]).strip() for d in data)
            ]
            feats = [[str(d[i]) for i in keep] for d in data]
        else:
            data = []
            for c in cols:
                v = _column(ds, c, "dataset.feature_columns", w)
                try:
                    data.append(np.asarray(v, dtype=np.float64))
                except (TypeError, ValueError):
                    raise ConfigError(
                        "dataset.feature_columns", f"column {c!r} in {w} is not numeric"
                    )
            x = np.stack(data, 1) if data else np.zeros((len(labels), 0))
            keep = [i for i, l in enumerate(labels) if not _missing(l)]
            x = x[keep]
            if np.isnan(x).any():
                bad = cols[int(np.where(np.isnan(x).any(0))[0][0])]
                raise ConfigError(
                    "dataset.feature_columns", f"column {bad!r} in {w} has missing values"
                )
            feats = x
        dropped += len(labels) - len(keep)
        rows[split] = ([labels[i] for i in keep], feats)
        if not keep:
            raise ConfigError(
                "dataset.label_column" if text_column is None else "dataset.text_column",
                f"no usable rows in {w}",
            )
    if dropped:
        T.note(
            f"dataset={dataset}: dropped {dropped} rows with a missing label"
            + (" or an empty text" if text_column is not None else "")
        )
    return rows


def _carve_splits(
    span: dict,
    tables: dict,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    sizes: tuple,
) -> dict:
    """Missing val/test carved from train (seeded by split_seed, independent of the run seed);
    every split shuffled and capped at its *_size."""
    rng = np.random.RandomState(split_seed)
    train = span["train"][rng.permutation(len(span["train"]))]
    n_rows = len(train)  # fractions are of the train file (of the whole table when one file)
    for s, frac in (("test", test_fraction), ("val", val_fraction)):
        if s not in span:
            n = int(round(n_rows * frac))
            check(
                n > 0,
                f"dataset.{s}_fraction",
                f"gives an empty {s} split ({len(train)} train rows); raise it or give a {s} file",
            )
            span[s], train = train[:n], train[n:]
    check(
        len(train) > 0,
        "dataset.val_fraction",
        "val_fraction + test_fraction leave no training rows",
    )
    span["train"] = train
    for s in ("val", "test"):  # shuffle given splits too, so *_size takes a random subset
        if s in tables:
            span[s] = span[s][np.random.RandomState(split_seed + 1).permutation(len(span[s]))]
    return {
        s: T.cap(span[s], size, f"dataset.{s}_size")
        for s, size in zip(("train", "val", "test"), sizes)
    }


def _input_columns(tables, text_column, feature_columns, label_column, label_columns) -> list:
    """The input columns: the text column(s) (one, or two for sentence pairs) or the numeric
    feature columns (`all` / `*`: every column of the train table but the label(s))."""
    if text_column is not None:
        cols = [text_column] if isinstance(text_column, str) else list(text_column)
        check(
            len(cols) in (1, 2) and all(isinstance(c, str) for c in cols),
            "dataset.text_column",
            f"one column name or a list of two, got {text_column!r}",
        )
        return cols
    if feature_columns in ("all", "*"):
        skip = set(label_columns) if label_columns is not None else {label_column}
        cols = [c for c in tables["train"].column_names if c not in skip]
    else:
        cols = [feature_columns] if isinstance(feature_columns, str) else list(feature_columns)
    check(len(cols) > 0, "dataset.feature_columns", "no feature columns")
    return cols


def _encode_all_labels(rows: dict, where: dict, label_names, multi: bool, label_columns):
    """One label vocabulary across splits: (ids, class_names, span), span = each split's row
    indices into the concatenation of the splits in `rows`' order."""
    order = list(rows)
    all_labels = [l for s in order for l in rows[s][0]]
    if label_names is not None and any(isinstance(l, int) and l < 0 for l in all_labels):
        bad = next(s for s in order if any(l < 0 for l in rows[s][0]))
        raise ConfigError(
            "dataset",
            f"the {bad} split ({where[bad]}) has no labels (-1); "
            f"set dataset.{bad}_split=null to carve it from train",
        )
    where_all = " + ".join(where[s] for s in order)
    ids, class_names = (
        _encode_multi(all_labels, label_columns)
        if multi
        else T.encode_labels(all_labels, "dataset.label_column", where_all, names=label_names)
    )
    offsets = np.cumsum([0] + [len(rows[s][0]) for s in order])
    span = {s: np.arange(offsets[i], offsets[i + 1]) for i, s in enumerate(order)}
    return ids, class_names, span


def _feature_data(rows, ids, span, class_names, standardize, semi) -> Data:
    """Numeric features as {'x', 'y'} tensors, standardized with the train split's mean and std;
    `semi` = (labeled_fraction, labeled_size, split_seed)."""
    x = np.concatenate([rows[s][1] for s in rows]).astype(np.float32)
    if standardize:
        tr = x[span["train"]]
        mu, sd = tr.mean(0), tr.std(0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(ids)
    mk = lambda idx: {"x": x[idx], "y": y[idx]}
    train = semi_supervised(mk(span["train"]), *semi)
    return Data(
        train,
        mk(span["val"]),
        mk(span["test"]),
        {"in_dim": x.shape[1], "num_classes": len(class_names)},
        class_names,
    )


def check_columns(text_column, feature_columns, tokenizer=None, dataset: str | None = None):
    """Exactly one of text_column (text) and feature_columns (numeric). With the dataset's name
    (dataset=csv / hf build, which check before reading any file), a text dataset also needs a
    text model's tokenizer."""
    check(
        (text_column is None) != (feature_columns is None),
        "dataset.text_column",
        "set exactly one of text_column (text) and feature_columns (numeric)",
    )
    if dataset is not None and text_column is not None and tokenizer is None:
        T.load_tokenizer(None, dataset)  # says: pick a text model


@dataclass(frozen=True)
class TableArgs:
    """What dataset=csv and dataset=hf share (their config keys of the same names): the columns,
    tokenization, how the splits are carved and capped, padding, standardization, multi-label and
    semi-supervised options. Each builder takes its own keys (a path; a Hub name and splits) and
    passes the rest here as keyword arguments."""

    text_column: object = None
    feature_columns: object = None
    label_column: str = "label"
    tokenizer: object = None
    max_len: int = 128
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    padding: str = "dynamic"
    standardize: bool = True
    label_columns: object = None
    label_delimiter: str | None = None
    labeled_fraction: float | None = None
    labeled_size: int | None = None


def with_table_args(fn):
    """`fn(own keys..., **table_args)`, its signature showing TableArgs' fields after its own
    keys, so runner.build.call checks a dataset's keys against the full list (unknown key ->
    one line naming the allowed ones) and hands it the tokenizer."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in fields(TableArgs)
        if f.name not in names
    ]
    fn.__signature__ = sig.replace(parameters=own + shared)
    return fn


def from_tables(
    tables: dict, where: dict, args: TableArgs, dataset: str = "csv", label_names=None
) -> Data:
    """`tables`: {'train': Dataset, 'val'?: Dataset, 'test'?: Dataset}; `where` names each for
    error messages. Shared by dataset=csv and dataset=hf."""
    text_column, feature_columns, label_column = (
        args.text_column,
        args.feature_columns,
        args.label_column,
    )
    check_columns(text_column, feature_columns)
    check(
        isinstance(label_column, str) and label_column != "",
        "dataset.label_column",
        "required: the name of the label column",
    )
    label_delimiter = args.label_delimiter
    label_columns = _check_multi_args(_plain(args.label_columns), label_delimiter)
    multi = label_columns is not None or label_delimiter is not None
    cols = _input_columns(tables, text_column, feature_columns, label_column, label_columns)
    if text_column is not None:
        tok = T.load_tokenizer(args.tokenizer, dataset)
    in_range(args.val_fraction, "dataset.val_fraction", 0.0, 1.0, hi_open=True)
    in_range(args.test_fraction, "dataset.test_fraction", 0.0, 1.0, hi_open=True)

    # Gather every split's columns, dropping rows without a label or text.
    labels_of = (
        (lambda ds, w: _multi_labels(ds, w, label_column, label_columns, label_delimiter))
        if multi
        else (lambda ds, w: list(_column(ds, label_column, "dataset.label_column", w)))
    )
    rows = _gather_rows(tables, where, cols, text_column, labels_of, dataset)
    ids, class_names, span = _encode_all_labels(rows, where, label_names, multi, label_columns)
    sizes = (args.train_size, args.val_size, args.test_size)
    span = _carve_splits(
        span, tables, args.val_fraction, args.test_fraction, args.split_seed, sizes
    )
    semi = (args.labeled_fraction, args.labeled_size, args.split_seed)
    if text_column is None:
        return _feature_data(rows, ids, span, class_names, args.standardize, semi)

    texts = [t for s in rows for t in rows[s][1][0]]
    pairs = [t for s in rows for t in rows[s][1][1]] if len(cols) == 2 else None
    splits, info, collate = T.text_splits(
        tok, texts, pairs, ids, span, args.max_len, args.padding, dataset
    )
    info["num_classes"] = len(class_names)
    train = semi_supervised(splits["train"], *semi)
    return Data(train, splits["val"], splits["test"], info, class_names, collate)


@with_table_args
def build(path=None, **table_args) -> Data:
    """dataset=csv: `path` (one file, or {train: FILE, val: FILE, test: FILE}) and the keys of
    TableArgs."""
    args = TableArgs(**table_args)
    check_columns(args.text_column, args.feature_columns, args.tokenizer, "csv")
    if isinstance(path, DictConfig):
        path = OmegaConf.to_container(path)
    tables, where = load_files(path)
    return from_tables(tables, where, args, dataset="csv")


def _plain(v):
    return OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v
