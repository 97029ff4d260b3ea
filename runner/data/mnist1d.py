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
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from runner import CACHE_DIR
from runner.data.base import Data
from runner.errors import ConfigError, in_range, positive


def _generate(num_samples: int, data_seed: int) -> dict:
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


def build(num_samples: int = 5000, val_size: int = 500, label_noise: float = 0.0,
          data_seed: int = 42) -> Data:
    positive(num_samples, "dataset.num_samples", integer=True)
    positive(val_size, "dataset.val_size", integer=True)
    in_range(label_noise, "dataset.label_noise", 0.0, 1.0)
    a = load_arrays(num_samples, data_seed)
    n_train = len(a["y"])
    if val_size >= n_train:
        raise ConfigError("dataset.val_size", f"{val_size} leaves no training data "
                          f"(train split has {n_train})")
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
    return Data(
        train={"x": x[:-val_size], "y": ytr},
        val={"x": x[-val_size:], "y": y[-val_size:]},
        test={"x": xt, "y": yt},
        info={"in_dim": x.shape[1], "num_classes": num_classes},
        class_names=[str(i) for i in range(num_classes)],
    )
