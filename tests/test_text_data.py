"""Text datasets: tweets cleaning and fixed split, csv (text labels, numeric features, formats,
given splits), hf on local files, the tokenization cache, dynamic padding, and every bad-input
case's one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.data import text as T
from runner.errors import ConfigError


def one_line_error(fn, *args, key: str, match: str = "", **kw) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(key + ":"), msg
    assert match in msg, msg
    return msg


@pytest.fixture(scope="module")
def tweets_frame():
    from runner.data.tweets import load_frame

    return load_frame()


def write_csv(path, rows, header=("text", "label")):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def small_rows(tweets_frame):
    """90 real tweets with string labels."""
    df = tweets_frame.sample(90, random_state=0)
    return list(zip(df["text"], df["sentiment"]))


# -- tweets ------------------------------------------------------------------------------------


def test_tweets_cleaning_and_documented_counts(tweets_frame):
    df = tweets_frame
    assert len(df) == 37197
    assert df["text"].is_unique and (df["text"].str.len() > 0).all()
    assert df["sentiment"].value_counts().to_dict() == {
        "negative": 15955,
        "neutral": 14431,
        "positive": 6811,
    }
    parts = T.fractions_split(len(df), 0.1, 0.1, 0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 29757, "val": 3720, "test": 3720}
    allidx = np.concatenate(list(parts.values()))
    assert len(np.unique(allidx)) == len(df)
    # the documented counts are the ones in the config comment
    from conftest import CONF

    text = (CONF / "dataset" / "tweets.yaml").read_text()
    assert "29,757 train / 3,720 val / 3,720 test" in text


def test_tweets_split_is_fixed_and_train_size_nests(capsys):
    from runner.data.tweets import build

    a = build(tokenizer="bytes", train_size=40, val_size=20, test_size=20, max_len=24)
    b = build(tokenizer="bytes", train_size=80, val_size=20, test_size=20, max_len=24)
    assert [Data_size(a, s) for s in ("train", "val", "test")] == [40, 20, 20]
    # nested: the first 40 of train are the same tweets (ids compared on their common width)
    w = min(a.train["x"].shape[1], b.train["x"].shape[1])
    assert torch.equal(a.train["x"][:, :w], b.train["x"][:40, :w])
    assert torch.equal(a.val["y"], b.val["y"])
    assert a.class_names == ["negative", "neutral", "positive"]
    assert a.info["num_classes"] == 3 and a.info["vocab_size"] == 259
    # truncation is reported once, in one line
    err = capsys.readouterr().err
    assert err.count("were truncated") == 2 and "max_len=24" in err


def Data_size(d, split):
    return len(getattr(d, split)["y"])


def test_tweets_with_minilm_tokenizer(tweets_frame):
    from runner.data.tweets import build

    d = build(tokenizer="minilm", train_size=30, val_size=10, test_size=10, max_len=64)
    x, m = d.train["x"], d.train["mask"]
    assert x.dtype == torch.long and m.shape == x.shape and x.shape[1] <= 64
    lengths = m.sum(1)
    assert (x[:, 0] == 101).all()  # [CLS]
    assert (x[torch.arange(len(x)), lengths - 1] == 102).all()  # [SEP] at each text's end
    assert ((x == 0) == (m == 0)).all()  # pad id 0 exactly where the mask is 0
    assert d.info["pad_id"] == 0 and d.info["vocab_size"] == 30522 and d.info["max_len"] == 64
    assert isinstance(d.collate, T.TrimPadding)
    assert d.to("cpu").collate is d.collate


def test_text_dataset_needs_a_text_model():
    from runner.data.tweets import build

    one_line_error(build, tokenizer=None, key="model", match="pick a text model")


# -- tokenization cache and padding -----------------------------------------------------------


def test_tokenization_is_cached_on_disk(tmp_path, monkeypatch):
    tok = T.ByteTokenizer()
    texts = ["hello world", "a much longer text than the other one", "x"]
    first = T.tokenize(tok, texts, None, 16, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("tok-*.pt"))) == 1
    assert first["n_truncated"] == 1 and first["ids"].shape == (3, 16)

    def boom(*a, **k):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tok, "encode", boom)
    again = T.tokenize(tok, texts, None, 16, cache_dir=tmp_path)
    assert torch.equal(again["ids"], first["ids"])
    with pytest.raises(AssertionError):  # another max_len or other texts: another key
        T.tokenize(tok, texts, None, 17, cache_dir=tmp_path)
    with pytest.raises(AssertionError):
        T.tokenize(tok, texts + ["y"], None, 16, cache_dir=tmp_path)
    # a corrupt entry is rebuilt, not fatal
    monkeypatch.undo()
    path = next(tmp_path.glob("tok-*.pt"))
    path.write_bytes(b"garbage")
    assert torch.equal(T.tokenize(tok, texts, None, 16, cache_dir=tmp_path)["ids"], first["ids"])


def test_trim_padding_drops_only_padding():
    x = torch.tensor(
        [
            [5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    m = (x != 0).long()
    b = T.TrimPadding()({"x": x, "mask": m, "y": torch.tensor([0, 1])})
    assert b["x"].shape == (2, 16) and b["mask"].shape == (2, 16)  # longest 10 -> multiple of 8
    assert torch.equal(b["x"], x[:, :16]) and torch.equal(b["y"], torch.tensor([0, 1]))
    assert b["mask"].sum() == m.sum()


def test_byte_tokenizer_pairs_and_truncation():
    ids, _, n = T.ByteTokenizer().encode(["ab", "abcdef"], ["c", "g"], max_len=6)
    assert ids[0] == [1, ord("a") + 3, ord("b") + 3, 2, ord("c") + 3, 2]
    assert n == 1 and len(ids[1]) == 6 and ids[1][-1] == 2


# -- csv -------------------------------------------------------------------------------------


def test_csv_text_labels_seeded_split(tmp_path, small_rows):
    from runner.data.csv import build

    p = write_csv(tmp_path / "t.csv", small_rows)
    kw = dict(
        path=str(p),
        text_column="text",
        label_column="label",
        tokenizer="bytes",
        val_fraction=0.2,
        test_fraction=0.1,
        max_len=32,
    )
    d = build(**kw)
    assert d.class_names == sorted({l for _, l in small_rows})
    assert (Data_size(d, "train"), Data_size(d, "val"), Data_size(d, "test")) == (63, 18, 9)
    # every row lands in exactly one split, with its own label (byte ids decode to the text)
    got = sorted(
        (bytes(int(i) - 3 for i in x[1 : int(m.sum()) - 1]), d.class_names[int(y)])
        for split in (d.train, d.val, d.test)
        for x, m, y in zip(split["x"], split["mask"], split["y"])
    )
    assert got == sorted((t.encode()[:30], l) for t, l in small_rows)
    again = build(**kw)
    assert torch.equal(again.val["x"], d.val["x"])  # the split depends on split_seed only
    other = build(**kw, split_seed=1)
    assert not torch.equal(other.val["x"], d.val["x"])


def test_csv_given_splits_and_formats(tmp_path, small_rows):
    import pandas as pd

    from runner.data.csv import build

    df = pd.DataFrame(small_rows, columns=["text", "label"])
    df.iloc[:60].to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    df.iloc[60:75].to_parquet(tmp_path / "val.parquet")
    df.iloc[75:].to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    d = build(
        path={
            "train": str(tmp_path / "train.jsonl"),
            "validation": str(tmp_path / "val.parquet"),
            "test": str(tmp_path / "test.tsv"),
        },
        text_column="text",
        tokenizer="bytes",
        max_len=32,
    )
    assert (Data_size(d, "train"), Data_size(d, "val"), Data_size(d, "test")) == (60, 15, 15)
    names = d.class_names
    want = sorted(df.iloc[75:]["label"].map(names.index).tolist())
    assert sorted(d.test["y"].tolist()) == want
    # no test file: carved from train by test_fraction
    d2 = build(
        path={"train": str(tmp_path / "train.jsonl"), "val": str(tmp_path / "val.parquet")},
        text_column="text",
        tokenizer="bytes",
        max_len=32,
        test_fraction=0.25,
    )
    assert (Data_size(d2, "train"), Data_size(d2, "val"), Data_size(d2, "test")) == (45, 15, 15)


def test_csv_numeric_features_and_int_labels(tmp_path):
    from runner.data.csv import build

    rng = np.random.RandomState(0)
    rows = [
        (float(a), float(b), int(l))
        for a, b, l in zip(rng.randn(50) * 3 + 10, rng.randn(50), rng.choice([3, 7], 50))
    ]
    p = write_csv(tmp_path / "f.csv", rows, header=("a", "b", "target"))
    d = build(
        path=str(p),
        feature_columns=["a", "b"],
        label_column="target",
        tokenizer=None,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert d.info == {"in_dim": 2, "num_classes": 2} and d.class_names == ["3", "7"]
    assert d.train["x"].dtype == torch.float32 and d.collate is None
    assert torch.allclose(d.train["x"].mean(0), torch.zeros(2), atol=1e-5)  # standardized on train
    assert torch.allclose(d.train["x"].std(0, unbiased=False), torch.ones(2), atol=1e-4)
    d_all = build(
        path=str(p),
        feature_columns="all",
        label_column="target",
        val_fraction=0.2,
        test_fraction=0.2,
        standardize=False,
    )
    assert d_all.info["in_dim"] == 2
    # labels mapped in sorted order: 3 -> 0, 7 -> 1
    raw = {round(a, 4): l for a, b, l in rows}
    for x, y in zip(d_all.train["x"], d_all.train["y"]):
        assert [3, 7][int(y)] == raw[round(float(x[0]), 4)]


def bad_csv_cases(tmp_path, small_rows):
    good = write_csv(tmp_path / "good.csv", small_rows)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = write_csv(tmp_path / "header.csv", [])
    one_class = write_csv(tmp_path / "one.csv", [(t, "positive") for t, _ in small_rows])
    feats = write_csv(
        tmp_path / "feats.csv",
        [("abc", 1.0, 0), ("def", 2.0, 1)] * 5,
        header=("word", "v", "label"),
    )
    nan_feats = write_csv(tmp_path / "nanf.csv", [("", 0), (1.0, 1)] * 5, header=("v", "label"))
    T_ = dict(text_column="text", tokenizer="bytes")
    return [
        (
            "missing file",
            dict(path=str(tmp_path / "nope.csv"), **T_),
            "dataset.path",
            "file not found",
        ),
        ("no path", dict(path=None, **T_), "dataset.path", "required"),
        ("empty file", dict(path=str(empty), **T_), "dataset.path", "is empty"),
        ("header only", dict(path=str(header_only), **T_), "dataset.path", "no rows"),
        ("bad suffix", dict(path=str(tmp_path), **T_), "dataset.path", "is a folder"),
        (
            "missing text column",
            dict(path=str(good), text_column="body", tokenizer="bytes"),
            "dataset.text_column",
            "no column 'body'",
        ),
        (
            "missing label column",
            dict(path=str(good), label_column="stars", **T_),
            "dataset.label_column",
            "no column 'stars'",
        ),
        (
            "single class",
            dict(path=str(one_class), **T_),
            "dataset.label_column",
            "only one class ('positive')",
        ),
        (
            "text and features",
            dict(path=str(good), text_column="text", feature_columns=["x"]),
            "dataset.text_column",
            "exactly one",
        ),
        ("neither", dict(path=str(good)), "dataset.text_column", "exactly one"),
        (
            "non-numeric feature",
            dict(path=str(feats), feature_columns=["word", "v"]),
            "dataset.feature_columns",
            "'word'",
        ),
        (
            "missing feature values",
            dict(path=str(nan_feats), feature_columns=["v"]),
            "dataset.feature_columns",
            "missing values",
        ),
        (
            "missing feature column",
            dict(path=str(feats), feature_columns=["w"]),
            "dataset.feature_columns",
            "no column 'w'",
        ),
        (
            "unknown split",
            dict(path={"train": str(good), "holdout": str(good)}, **T_),
            "dataset.path.holdout",
            "unknown split",
        ),
        (
            "bad padding",
            dict(path=str(good), padding="sorted", **T_),
            "dataset.padding",
            "allowed: dynamic, bucket, max",
        ),
        (
            "text without a text model",
            dict(path=str(good), text_column="text", tokenizer=None),
            "model",
            "pick a text model",
        ),
        ("max_len too small", dict(path=str(good), max_len=1, **T_), "dataset.max_len", ">= 2"),
    ]


BAD_IDS = [
    "missing file",
    "no path",
    "empty file",
    "header only",
    "bad suffix",
    "missing text column",
    "missing label column",
    "single class",
    "text and features",
    "neither",
    "non-numeric feature",
    "missing feature values",
    "missing feature column",
    "unknown split",
    "bad padding",
    "text without a text model",
    "max_len too small",
]


@pytest.mark.parametrize("case", BAD_IDS)
def test_csv_bad_input_one_line(case, tmp_path, small_rows):
    from runner.data.csv import build

    cases = {c[0]: c[1:] for c in bad_csv_cases(tmp_path, small_rows)}
    assert set(cases) == set(BAD_IDS)
    kw, key, match = cases[case]
    one_line_error(build, key=key, match=match, **kw)


# -- hf (datasets.load_dataset) on local files -------------------------------------------------


@pytest.fixture
def local_hf_dir(tmp_path, small_rows):
    d = tmp_path / "my_data"
    d.mkdir()
    write_csv(d / "train.csv", small_rows[:60], header=("sentence", "label"))
    write_csv(d / "validation.csv", small_rows[60:75], header=("sentence", "label"))
    write_csv(d / "test.csv", small_rows[75:], header=("sentence", "label"))
    return d


def test_hf_local_folder(local_hf_dir):
    from runner.data.hf import build

    d = build(name=str(local_hf_dir), subset=None, tokenizer="bytes", max_len=32, test_split="test")
    assert (Data_size(d, "train"), Data_size(d, "val"), Data_size(d, "test")) == (60, 15, 15)
    carved = build(
        name=str(local_hf_dir),
        subset=None,
        tokenizer="bytes",
        max_len=32,
        test_split=None,
        test_fraction=0.2,
    )
    assert (Data_size(carved, "train"), Data_size(carved, "val"), Data_size(carved, "test")) == (
        48,
        15,
        12,
    )


def test_hf_classlabel_names_and_hidden_test_labels(tmp_path):
    import datasets

    from runner.data.hf import build

    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    texts = [f"text number {i}" for i in range(20)]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": texts, "label": [i % 2 for i in range(20)]}, features=feats
            ),
            "validation": datasets.Dataset.from_dict(
                {"sentence": texts[:6], "label": [1, 0] * 3}, features=feats
            ),
            "test": datasets.Dataset.from_dict(
                {"sentence": texts[:6], "label": [-1] * 6}, features=feats
            ),
        }
    )
    folder = tmp_path / "saved"
    for split, ds in dd.items():
        ds.to_parquet(str(folder / f"{split}.parquet"))
    d = build(
        name=str(folder),
        subset=None,
        tokenizer="bytes",
        max_len=32,
        test_split=None,
        test_fraction=0.25,
    )
    assert d.class_names == ["neg", "pos"]
    one_line_error(
        build,
        name=str(folder),
        subset=None,
        tokenizer="bytes",
        test_split="test",
        key="dataset",
        match="set dataset.test_split=null",
    )


def test_hf_bad_input_one_line(local_hf_dir):
    from runner.data.hf import build

    one_line_error(
        build,
        name=str(local_hf_dir),
        subset=None,
        tokenizer="bytes",
        val_split="dev",
        key="dataset.val_split",
        match="no split 'dev'",
    )
    one_line_error(
        build,
        name=str(local_hf_dir),
        subset=None,
        tokenizer="bytes",
        text_column="text",
        key="dataset.text_column",
        match="no column 'text'",
    )
    one_line_error(build, name=None, tokenizer="bytes", key="dataset.name", match="required")


def test_hf_hub_unreachable_says_so(monkeypatch):
    import datasets

    from runner.data.hf import build

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    msg = one_line_error(
        build,
        name="glue",
        subset="sst2",
        tokenizer="bytes",
        key="dataset.name",
        match="cannot be reached",
    )
    assert "glue" in msg


def test_csv_sentence_pairs_get_token_types(tmp_path, small_rows):
    from runner.data.csv import build

    rows = [(t, t[::-1], l) for t, l in small_rows[:30]]
    p = write_csv(tmp_path / "pairs.csv", rows, header=("premise", "hypothesis", "label"))
    d = build(
        path=str(p),
        text_column=["premise", "hypothesis"],
        tokenizer="minilm",
        max_len=64,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    x, m, tt = d.train["x"], d.train["mask"], d.train["token_type_ids"]
    assert tt.shape == x.shape and (tt[m == 0] == 0).all()
    for xi, ti, mi in zip(x, tt, m):
        seps = (xi == 102).nonzero().flatten().tolist()
        assert len(seps) == 2 and seps[1] == int(mi.sum()) - 1  # [CLS] a [SEP] b [SEP]
        assert (ti[: seps[0] + 1] == 0).all() and (ti[seps[0] + 1 : seps[1] + 1] == 1).all()
    b = d.collate(d.train)  # dynamic padding trims the token types too
    assert b["token_type_ids"].shape == b["x"].shape


def test_label_order_and_rows_without_label_or_text(tmp_path, capsys):
    from runner.data.csv import build

    assert T.encode_labels(["10", "2", "1", "2"], "k", "w")[1] == ["1", "2", "10"]
    assert T.encode_labels(["b", "a", "b"], "k", "w")[0].tolist() == [1, 0, 1]
    rows = [("good text", "pos"), ("", "neg"), ("other text", ""), ("third", "neg")] * 5
    p = write_csv(tmp_path / "holes.csv", rows)
    d = build(
        path=str(p),
        text_column="text",
        tokenizer="bytes",
        max_len=16,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert sum(Data_size(d, s) for s in ("train", "val", "test")) == 10
    assert "dropped 10 rows with a missing label or an empty text" in capsys.readouterr().err


# -- length-grouped batches (dataset.padding=bucket) and length-ordered evaluation --------------


def _ragged_split(n=1003, width=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (n,), generator=g)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return {
        "x": torch.randint(5, 100, (n, width), generator=g) * mask,
        "mask": mask,
        "y": torch.arange(n),
    }


@pytest.mark.parametrize("bucket", [False, True])
def test_every_row_once_per_epoch_same_order_for_same_seed(bucket):
    from runner.data.batching import IndexBatcher

    split = _ragged_split()
    b = IndexBatcher(split, 32, seed=1, collate=T.TrimPadding(bucket=bucket))
    assert sorted(b.order(0).tolist()) == list(range(1003))  # a permutation of every row
    for epoch in (0, 1):
        ys = torch.cat([x["y"] for x in b.epoch(epoch)])
        assert len(ys) == 31 * 32 and len(set(ys.tolist())) == len(ys)
        again = IndexBatcher(split, 32, seed=1, collate=T.TrimPadding(bucket=bucket))
        assert torch.equal(ys, torch.cat([x["y"] for x in again.epoch(epoch)]))
        # resuming mid-epoch gives the rest of the same epoch
        rest = torch.cat([x["y"] for x in again.epoch(epoch, start=7)])
        assert torch.equal(rest, ys[7 * 32 :])
    assert not torch.equal(b.order(0), b.order(1))


def test_bucketed_batches_pad_far_less_and_stay_random():
    from runner.data.batching import IndexBatcher

    split = _ragged_split()
    lengths = split["mask"].sum(1)
    plain = list(IndexBatcher(split, 32, seed=2, collate=T.TrimPadding()).epoch(0))
    bucket = list(IndexBatcher(split, 32, seed=2, collate=T.TrimPadding(bucket=True)).epoch(0))
    tokens = lambda bs: sum(x["x"].numel() for x in bs)
    assert tokens(bucket) < 0.7 * tokens(plain)  # uniform lengths 1..64: ~0.55x
    for x in bucket:  # trimmed to its own longest row (rounded to 8), no real token lost
        longest = int(lengths[x["y"]].max())
        assert x["x"].shape[1] == min(64, -(-longest // 8) * 8)
        assert torch.equal(x["x"], split["x"][x["y"]][:, : x["x"].shape[1]])
    # the batch order is shuffled: batch widths are not sorted over the epoch
    widths = [x["x"].shape[1] for x in bucket]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_bucketed_ddp_ranks_split_the_single_process_batches():
    from runner.data.batching import IndexBatcher

    split = _ragged_split(n=500)
    tp = T.TrimPadding(bucket=True)
    single = IndexBatcher(split, 20, seed=3, collate=tp)
    ranks = [IndexBatcher(split, 10, seed=3, collate=tp, rank=r, world_size=2) for r in (0, 1)]
    for whole, r0, r1 in zip(single.epoch(1), ranks[0].epoch(1), ranks[1].epoch(1)):
        assert torch.equal(whole["y"], torch.cat([r0["y"], r1["y"]]))


def test_eval_batches_run_in_length_order_over_every_row():
    from runner.data.batching import eval_batches

    split = _ragged_split(n=300)
    batches = list(eval_batches(split, 64, T.TrimPadding()))
    ys = torch.cat([b["y"] for b in batches])
    assert sorted(ys.tolist()) == list(range(300))
    widths = [b["x"].shape[1] for b in batches]
    assert widths == sorted(widths) and widths[0] < 64
    # without a trimming collate (fixed shapes) the split order is kept
    assert torch.equal(torch.cat([b["y"] for b in eval_batches(split, 64)]), split["y"])
