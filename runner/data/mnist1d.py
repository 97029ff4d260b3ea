"""mnist1d (Greydanus 2020, "Scaling down deep learning"), built procedurally with no network.

The package's `get_dataset` downloads by default; we call `make_dataset(get_dataset_args())`, which
builds the same 4000 train / 1000 test split offline (~1 s), and cache the arrays under
$TRICKS_CACHE (default ~/.cache/tricks).

Split: the last `val_size` (500) samples of the official 4000-sample train split are the
validation set, so train is 3500, val 500, test 1000 (the official test split, untouched). The split
depends only on the dataset settings, never on the run seed. Published test accuracy on the full
4000 train: logistic 32%, MLP 68%, CNN 94%, GRU 91%.

`label_noise` replaces that fraction of the train labels (not val/test) by uniform random labels,
seeded by `data_seed` (the flooding paper's noisy-label setting).

Semi-supervised (`labeled_fraction` / `labeled_size`, runner.data.base.semi_supervised): labels
kept on a subset of train seeded by `data_seed` (the dataset's seed, not the run seed).

`mnist1d_multi` (`build_multi`), a multi-label task built from the same arrays with no download:
each row of a split is the sum of that row's signal and, except for a `single_fraction` of rows,
the signal of another row of the same split with a different digit (picked by a permutation
seeded by `data_seed`); its labels are the set of digits present (multi-hot, 10 columns). The
signals overlaid keep their own random shift, scale and noise from mnist1d's generator, so the
model must tell apart two templates in one sequence. Sizes and split as mnist1d: 3500 / 500 / 1000.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from runner import CACHE_DIR
from runner.data.base import Data, semi_supervised
from runner.errors import ConfigError, in_range, positive


def _generate(num_samples: int, data_seed: int) -> dict:
    # mnist1d imports matplotlib and scipy (seconds): only a cache miss pays for them
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = data_seed
    d = make_dataset(args)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


def load_arrays(num_samples: int = 5000, data_seed: int = 42) -> dict:
    key = hashlib.sha1(json.dumps([num_samples, data_seed, 1]).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"mnist1d-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # a corrupt cache is rebuilt, never fatal
            pass
    arrays = _generate(num_samples, data_seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError:
        pass
    return arrays


def _train_arrays(num_samples: int, val_size: int, data_seed: int) -> dict:
    """The cached arrays, checked to leave training rows once the last `val_size` go to val."""
    a = load_arrays(num_samples, data_seed)
    n_train = len(a["y"])
    if val_size >= n_train:
        raise ConfigError(
            "dataset.val_size", f"{val_size} leaves no training data (train split has {n_train})"
        )
    return a


def _data(x, y, xt, yt, y_train, val_size, labeled_fraction, labeled_size, data_seed) -> Data:
    """The 10-digit splits of mnist1d and mnist1d_multi: the last `val_size` train rows are val,
    the rest train (labels `y_train`, kept on the semi-supervised subset); test as given."""
    train = semi_supervised(
        {"x": x[:-val_size], "y": y_train},
        labeled_fraction,
        labeled_size,
        data_seed,
        "dataset.data_seed",
    )
    return Data(
        train=train,
        val={"x": x[-val_size:], "y": y[-val_size:]},
        test={"x": xt, "y": yt},
        info={"in_dim": x.shape[1], "num_classes": 10},
        class_names=[str(i) for i in range(10)],
    )


def build(
    num_samples: int = 5000,
    val_size: int = 500,
    label_noise: float = 0.0,
    data_seed: int = 42,
    labeled_fraction: float | None = None,
    labeled_size: int | None = None,
) -> Data:
    positive(num_samples, "dataset.num_samples", integer=True)
    positive(val_size, "dataset.val_size", integer=True)
    in_range(label_noise, "dataset.label_noise", 0.0, 1.0)
    a = _train_arrays(num_samples, val_size, data_seed)
    x = torch.tensor(a["x"], dtype=torch.float32)
    y = torch.tensor(a["y"], dtype=torch.long)
    xt = torch.tensor(a["x_test"], dtype=torch.float32)
    yt = torch.tensor(a["y_test"], dtype=torch.long)
    num_classes = 10
    ytr = y[:-val_size].clone()
    if label_noise > 0:
        g = torch.Generator().manual_seed(data_seed + 1)
        flip = torch.rand(len(ytr), generator=g) < label_noise
        ytr[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=g)
    return _data(x, y, xt, yt, ytr, val_size, labeled_fraction, labeled_size, data_seed)


def mix(x: np.ndarray, y: np.ndarray, single_fraction: float, seed: int):
    """(x_i + x_j, multi-hot {y_i, y_j}) for each row i, j a seeded partner with another digit
    (none for a `single_fraction` of the rows)."""
    rng = np.random.RandomState(seed)
    n = len(y)
    partner = rng.permutation(n)
    same = y[partner] == y
    while same.any():  # re-draw the partners that share the digit
        partner[same] = rng.randint(0, n, int(same.sum()))
        same = y[partner] == y
    single = rng.rand(n) < single_fraction
    xm = x + np.where(single[:, None], 0.0, x[partner])
    ym = np.zeros((n, 10), dtype=np.float32)
    ym[np.arange(n), y] = 1.0
    ym[np.arange(n)[~single], y[partner][~single]] = 1.0
    return xm.astype(np.float32), ym


def build_multi(
    num_samples: int = 5000,
    val_size: int = 500,
    single_fraction: float = 0.3,
    data_seed: int = 42,
    labeled_fraction: float | None = None,
    labeled_size: int | None = None,
) -> Data:
    """mnist1d_multi: see the module docstring."""
    positive(num_samples, "dataset.num_samples", integer=True)
    positive(val_size, "dataset.val_size", integer=True)
    in_range(single_fraction, "dataset.single_fraction", 0.0, 1.0)
    a = _train_arrays(num_samples, val_size, data_seed)
    x, y = mix(a["x"], a["y"].astype(np.int64), single_fraction, data_seed + 2)
    xt, yt = mix(a["x_test"], a["y_test"].astype(np.int64), single_fraction, data_seed + 3)
    x, y, xt, yt = (torch.from_numpy(v) for v in (x, y, xt, yt))
    return _data(x, y, xt, yt, y[:-val_size], val_size, labeled_fraction, labeled_size, data_seed)
