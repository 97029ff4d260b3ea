"""Text end to end through the engine: every text dataset x text model (from the conf folders)
trains a few steps; csv numeric features with model=mlp; MiniLM learns (fast check) and beats the
majority class on tweets (slow); reg=fgm and reg=rdrop on MiniLM; gradient checkpointing through
`trainer.grad_checkpointing`; mismatched dataset/model and bad files give one line."""

from __future__ import annotations

import csv
import inspect

import pytest
import torch
from omegaconf import OmegaConf

from runner.errors import ConfigError

from conftest import CONF, cli, conf_options, read_rows, strip_timing, train_run

STEPS = [
    "trainer.max_steps=2",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.batch_size=8",
    "trainer.eval_batch_size=32",
    "optimizer.lr=1e-4",
]


def _is_text_model(option: str) -> bool:
    return "tokenizer" in OmegaConf.load(CONF / "model" / f"{option}.yaml")


def _is_text_dataset(option: str) -> bool:
    from hydra.utils import get_object

    target = OmegaConf.load(CONF / "dataset" / f"{option}.yaml")["_target_"]
    return "tokenizer" in inspect.signature(get_object(target)).parameters


TEXT_MODELS = [o for o in conf_options("model") if _is_text_model(o)]
TEXT_DATASETS = [o for o in conf_options("dataset") if _is_text_dataset(o)]


def _minilm_path():
    from runner.data.text import minilm_path

    return minilm_path()


# Tiny, CPU-sized versions of each option (a new text option must add its line here).
MODEL_TINY = {
    "transformer": ["model.width=32", "model.depth=1", "model.heads=2"],
    "minilm": [],
    "hf": lambda: [f"model.name={_minilm_path()}"],
}


@pytest.fixture(scope="module")
def rows():
    from runner.data.tweets import load_frame

    df = load_frame().sample(96, random_state=1)
    return list(zip(df["text"], df["sentiment"]))


@pytest.fixture(scope="module")
def files(tmp_path_factory, rows):
    d = tmp_path_factory.mktemp("text_files")
    with open(d / "reviews.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "stars"])
        w.writerows(rows)
    folder = d / "hf_data"
    folder.mkdir()
    for name, part in (("train", rows[:64]), ("validation", rows[64:80]), ("test", rows[80:])):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sentence", "label"])
            w.writerows(part)
    return d


def dataset_tiny(option: str, files) -> list[str]:
    return {
        "tweets": [
            "dataset.train_size=32",
            "dataset.val_size=16",
            "dataset.test_size=16",
            "dataset.max_len=32",
        ],
        "csv": [
            f"dataset.path={files / 'reviews.csv'}",
            "dataset.text_column=review",
            "dataset.label_column=stars",
            "dataset.max_len=32",
        ],
        "hf": [
            f"dataset.name={files / 'hf_data'}",
            "dataset.subset=null",
            "dataset.test_split=test",
            "dataset.max_len=32",
        ],
    }[option]


def test_text_options_are_known():
    assert {"transformer", "minilm", "hf"} <= set(TEXT_MODELS)
    assert {"tweets", "csv", "hf"} <= set(TEXT_DATASETS)
    assert "mnist1d" not in TEXT_DATASETS and "mlp" not in TEXT_MODELS
    missing = [m for m in TEXT_MODELS if m not in MODEL_TINY]
    assert not missing, f"add tiny overrides for model={missing} to MODEL_TINY"


@pytest.mark.parametrize("model", TEXT_MODELS)
@pytest.mark.parametrize("dataset", TEXT_DATASETS)
def test_text_pair_trains(dataset, model, files, tmp_path):
    tiny = MODEL_TINY[model]
    tiny = tiny() if callable(tiny) else tiny
    run = tmp_path / "run"
    s = train_run(
        [f"dataset={dataset}", f"model={model}", *dataset_tiny(dataset, files), *tiny, *STEPS], run
    )
    assert s["status"] == "completed", s.get("error")
    assert s["steps"] == 2
    last = read_rows(run)[-1]
    for k in ("train/loss", "val/acc", "test/acc", "grad_norm"):
        assert k in last and last[k] == last[k], k
    assert 0.0 <= last["val/acc"] <= 1.0 and last["grad_norm"] > 0


def test_csv_numeric_features_with_mlp(tmp_path):
    import numpy as np

    rng = np.random.RandomState(0)
    x = rng.randn(200, 3)
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "up", "down")
    p = tmp_path / "feats.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "direction"])
        w.writerows([(*map(float, r), l) for r, l in zip(x, y)])
    s = train_run(
        [
            "dataset=csv",
            f"dataset.path={p}",
            "dataset.feature_columns=[a,b,c]",
            "dataset.label_column=direction",
            "model=mlp",
            "trainer.max_steps=60",
            "trainer.eval_every=60",
            "trainer.log_every=20",
            "trainer.progress=false",
            "trainer.batch_size=32",
            "optimizer.lr=1e-2",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")
    assert s["best/val/acc"] >= 0.85  # a linearly separable rule is learnt


@pytest.mark.parametrize(
    "overrides,key,match",
    [
        (["dataset=tweets", "model=mlp"], "model", "pick a text model"),
        (["dataset=mnist1d", "model=transformer"], "dataset", "pick a text dataset"),
        (
            [
                "dataset=csv",
                "dataset.path=/nonexistent/x.csv",
                "dataset.text_column=t",
                "model=transformer",
            ],
            "dataset.path",
            "file not found",
        ),
    ],
)
def test_mismatch_is_one_line_before_training(overrides, key, match, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        train_run([*overrides, *STEPS], run)
    assert str(e.value).startswith(key + ":") and match in str(e.value)
    assert "\n" not in str(e.value) and not run.exists()


def test_cli_bad_csv_is_one_line(tmp_path):
    r = cli(
        [
            "train",
            "dataset=csv",
            f"dataset.path={tmp_path / 'missing.csv'}",
            "dataset.text_column=text",
            "model=transformer",
            "trainer.progress=false",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines == [f"error: dataset.path: file not found: {tmp_path / 'missing.csv'}"]


def test_truncation_is_said_once(tmp_path, capfd):
    s = train_run(
        [
            "dataset=tweets",
            "model=transformer",
            *MODEL_TINY["transformer"],
            "dataset.train_size=32",
            "dataset.val_size=16",
            "dataset.test_size=16",
            "dataset.max_len=16",
            *STEPS,
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed"
    err = capfd.readouterr().err
    notes = [l for l in err.splitlines() if "truncated" in l]
    assert len(notes) == 1 and "max_len=16" in notes[0]


def test_grad_checkpointing_through_the_engine_changes_nothing(tmp_path):
    """Same seed, dropout on: the metrics with trainer.grad_checkpointing=true are identical."""
    base = [
        "dataset=tweets",
        "model=transformer",
        *MODEL_TINY["transformer"],
        "model.dropout=0.1",
        "dataset.train_size=32",
        "dataset.val_size=16",
        "dataset.test_size=16",
        "dataset.max_len=32",
        *STEPS,
        "trainer.max_steps=3",
        "trainer.eval_every=3",
    ]
    a = train_run(base, tmp_path / "a")
    b = train_run([*base, "trainer.grad_checkpointing=true"], tmp_path / "b")
    assert a["status"] == b["status"] == "completed"
    assert strip_timing(read_rows(tmp_path / "a")) == strip_timing(read_rows(tmp_path / "b"))


# -- MiniLM: learns, beats the majority class, runs with FGM and R-Drop --------------------------


def test_minilm_learns_fast(tmp_path):
    """A few steps on the same 16 tweets: the training loss falls (the fine-tuning path works)."""
    from runner.data.tweets import build
    from runner.models.minilm import MiniLM

    torch.manual_seed(0)
    d = build(tokenizer="minilm", train_size=8, val_size=4, test_size=4, max_len=32)
    m = MiniLM(num_classes=3, max_len=d.info["max_len"]).train()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-4)
    b = d.collate(d.train)
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(m(b), b["y"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.slow
def test_minilm_beats_majority_on_tweets(tmp_path):
    """Fine-tune on 320 tweets, 2 epochs: validation accuracy beats always-negative clearly."""
    from runner.data.tweets import build

    val = build(tokenizer="bytes", train_size=1, val_size=300, test_size=1).val["y"]
    majority = torch.bincount(val).max().item() / len(val)
    s = train_run(
        [
            "dataset=tweets",
            "model=minilm",
            "dataset.train_size=320",
            "dataset.val_size=300",
            "dataset.test_size=100",
            "dataset.max_len=48",
            "trainer.epochs=2",
            "trainer.batch_size=16",
            "trainer.eval_batch_size=100",
            "trainer.log_every=10",
            "trainer.progress=false",
            "optimizer.lr=1e-4",
            "schedule=cosine",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")
    assert s["best/val/acc"] > majority + 0.1, (s["best/val/acc"], majority)


@pytest.mark.parametrize("trick,logged", [("fgm", "train/adv_loss"), ("rdrop", "train/rdrop_kl")])
def test_minilm_with_adversarial_and_rdrop(trick, logged, tmp_path):
    if not (CONF / "reg" / f"{trick}.yaml").exists():
        pytest.skip(f"conf/reg/{trick}.yaml not committed yet")
    run = tmp_path / "run"
    s = train_run(
        [
            "dataset=tweets",
            "model=minilm",
            f"reg=[{trick}]",
            "dataset.train_size=16",
            "dataset.val_size=8",
            "dataset.test_size=8",
            "dataset.max_len=32",
            *STEPS,
        ],
        run,
    )
    assert s["status"] == "completed", s.get("error")
    last = read_rows(run)[-1]
    assert last[logged] == last[logged] and last[logged] >= 0


# -- every trick on a text model ---------------------------------------------------------------


@pytest.mark.parametrize("trick", conf_options("reg"))
def test_every_reg_option_trains_on_the_transformer(trick, tmp_path):
    """The embed / forward_embedded interface is all tricks need: each conf/reg option runs on
    a from-scratch text model (with dropout, for R-Drop) unchanged."""
    s = train_run(
        [
            "dataset=tweets",
            "model=transformer",
            *MODEL_TINY["transformer"],
            "model.dropout=0.1",
            f"reg=[{trick}]",
            "dataset.train_size=16",
            "dataset.val_size=8",
            "dataset.test_size=8",
            "dataset.max_len=24",
            *STEPS,
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")


def test_transformer_options_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    s = train_run(
        [
            "dataset=tweets",
            "model=transformer",
            *MODEL_TINY["transformer"],
            "model.tokenizer=bytes",
            "model.talking_heads=true",
            "model.head_size=24",
            "model.activation=gelu_sigmoid",
            "model.pooling=cls",
            "dataset.padding=max",
            "dataset.train_size=16",
            "dataset.val_size=8",
            "dataset.test_size=8",
            "dataset.max_len=48",
            *STEPS,
        ],
        run,
    )
    assert s["status"] == "completed", s.get("error")
    from runner.checkpoint import load

    sd = load(run / "checkpoints" / "last.pt")["model"]
    assert sd["tok.weight"].shape == (259, 32)  # the byte vocabulary
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * 2 * 24, 32)
    assert "blocks.0.attn.mix_logits" in sd
