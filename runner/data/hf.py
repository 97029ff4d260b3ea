"""hf: any dataset `datasets.load_dataset` can open: a Hub name (e.g. glue / sst2) or a local
folder or loading script, with its split and column names.

    tricks train dataset=hf dataset.name=glue dataset.subset=sst2 model=minilm     # with a network
    tricks train dataset=hf dataset.name=./my_data model=minilm                    # local files

A local folder of `train.csv` / `validation.csv` / `test.csv` (or json / parquet) is read with
datasets' folder conventions. `val_split` / `test_split` name the given splits; null carves that
split from train (seeded by `split_seed`, never by the run seed) by `val_fraction` /
`test_fraction`. Hub benchmarks often hide their test labels (GLUE's test labels are -1): set
`test_split: null` there (the default) and the given validation split stays the val split.

Labels: a ClassLabel column keeps its ids and names; other columns are mapped to 0..K-1 in sorted
order. Columns, label checks, tokenization and padding are shared with dataset=csv
(runner.data.csv.from_tables), and so are multi-hot labels (`label_columns`, `label_delimiter`)
and semi-supervised subsets (`labeled_fraction`, `labeled_size`, seeded by `split_seed`).
When the Hub cannot be reached (no network, HF_DATASETS_OFFLINE=1)
the error says so in one line.
"""

from __future__ import annotations

import os

from runner import CACHE_DIR
from runner.data.base import Data
from runner.data.csv import (
    TableArgs,
    check_columns,
    from_tables,
    quiet_datasets,
    with_table_args,
)
from runner.errors import ConfigError, check


def _hub_unreachable(e: Exception) -> bool:
    s = f"{type(e).__name__} {e}".lower()
    return any(
        w in s
        for w in (
            "offline",
            "connection",
            "couldn't reach",
            "could not reach",
            "timed out",
            "timeout",
            "name resolution",
            "max retries",
            "localentrynotfound",
            "network",
        )
    )


def load(name: str, subset=None, revision=None):
    quiet_datasets()
    import datasets  # the optional `text` extra (runner.data.csv.quiet_datasets)

    check(
        isinstance(name, str) and name != "",
        "dataset.name",
        "required: a Hub dataset name (e.g. glue) or a local folder",
    )
    local = os.path.exists(os.path.expanduser(name))
    kw = {"revision": revision} if revision else {}
    try:
        return datasets.load_dataset(
            os.path.expanduser(name) if local else name,
            subset,
            cache_dir=str(CACHE_DIR / "datasets") if local else None,
            **kw,
        )
    except Exception as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if not local and _hub_unreachable(e):
            raise ConfigError(
                "dataset.name",
                f"cannot load {name!r}: the Hugging Face Hub cannot "
                "be reached (no network, or HF_DATASETS_OFFLINE=1) and it is not "
                "in the local cache; use a local folder or dataset=csv "
                f"({type(e).__name__})",
            )
        raise ConfigError(
            "dataset.name" if subset is None else "dataset.subset",
            f"cannot load {name!r}{'/' + subset if subset else ''}: {first}",
        )


@with_table_args
def build(
    name: str | None = None,
    subset: str | None = None,
    train_split: str = "train",
    val_split: str | None = "validation",
    test_split: str | None = None,
    revision: str | None = None,
    text_column="sentence",
    **table_args,
) -> Data:
    """dataset=hf: the Hub name (or local folder), its subset, splits and revision; the keys of
    runner.data.csv.TableArgs."""
    args = TableArgs(text_column=text_column, **table_args)
    check_columns(args.text_column, args.feature_columns, args.tokenizer, "hf")
    dd = load(name, subset, revision)
    available = list(dd.keys())
    tables, where = {}, {}
    for split, given, key in (
        ("train", train_split, "train_split"),
        ("val", val_split, "val_split"),
        ("test", test_split, "test_split"),
    ):
        if given is None:
            check(split != "train", "dataset.train_split", "required")
            continue
        if given not in dd:
            raise ConfigError(
                f"dataset.{key}", f"no split {given!r} in {name}", ", ".join(available)
            )
        tables[split], where[split] = dd[given], f"{name}[{given}]"
        if len(dd[given]) == 0:
            raise ConfigError(f"dataset.{key}", f"split {given!r} of {name} has no rows")
    label_names = None
    feat = tables["train"].features.get(args.label_column)
    if feat is not None and type(feat).__name__ == "ClassLabel":
        label_names = list(feat.names)
    return from_tables(tables, where, args, dataset="hf", label_names=label_names)
