"""Semi-supervised data (dataset.labeled_fraction / labeled_size): the labelled subset is seeded
by the dataset's split seed; the supervised loss and train/acc see labelled rows only; label-free
terms (VAT's and R-Drop's divergence) see every row."""

from __future__ import annotations

import pytest
import torch
from test_reg_math import make_state

from runner import losses as L
from runner.data.base import semi_supervised
from runner.errors import ConfigError

from conftest import FAST, read_rows, train_run

D, C = 5, 4


def _split(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, D, generator=g), "y": torch.randint(0, C, (n,), generator=g)}


def test_subset_is_seeded_by_the_split_seed_nested_and_hides_the_labels():
    tr = _split()
    a = semi_supervised(tr, labeled_fraction=0.2, seed=3)
    assert int(a["labeled"].sum()) == 10 and a["labeled"].dtype == torch.bool
    assert torch.equal(a["y"][a["labeled"]], tr["y"][a["labeled"]])
    assert (a["y"][~a["labeled"]] == -1).all() and torch.equal(a["x"], tr["x"])
    assert torch.equal(semi_supervised(tr, labeled_fraction=0.2, seed=3)["labeled"], a["labeled"])
    assert not torch.equal(
        semi_supervised(tr, labeled_fraction=0.2, seed=4)["labeled"], a["labeled"]
    )
    small = semi_supervised(tr, labeled_size=5, seed=3)["labeled"]
    assert int(small.sum()) == 5 and bool((a["labeled"] | ~small).all())  # 5 inside 10
    assert semi_supervised(tr) is tr  # off: unchanged, no `labeled` key
    for kw, msg in (
        ({"labeled_fraction": 0.0}, r"dataset.labeled_fraction: must be in"),
        ({"labeled_size": 51}, r"dataset.labeled_size: 51 is more than"),
        ({"labeled_size": 3, "labeled_fraction": 0.5}, r"not both"),
    ):
        with pytest.raises(ConfigError, match=msg):
            semi_supervised(tr, **kw)


def test_labelled_subset_does_not_depend_on_the_run_seed(tmp_path):
    from runner import build
    from runner.config import compose

    masks = [
        build.data(compose([f"seed={s}", "dataset.labeled_fraction=0.1"])).train["labeled"]
        for s in (0, 1)
    ]
    assert torch.equal(*masks) and int(masks[0].sum()) == 350
    other = build.data(compose(["dataset.labeled_fraction=0.1", "dataset.data_seed=43"]))
    assert not torch.equal(other.train["labeled"], masks[0])


def _grads(model, batch, tricks=(), loss=None, seed=0):
    from runner import engine

    model.zero_grad(set_to_none=True)
    st = make_state(model, tricks, loss=loss, setup=False)
    torch.manual_seed(seed)
    loss_fn, bwd_fn = engine.build_chains(st)
    out = loss_fn(batch)
    bwd_fn(out, batch)
    return [p.grad.clone() for p in model.parameters()], out, st


def _model(seed=0, dropout=0.0):
    from runner.models.mlp import MLP

    torch.manual_seed(seed)
    return MLP(in_dim=D, num_classes=C, hidden=8, depth=2, dropout=dropout)


@pytest.mark.parametrize("multilabel", [False, True], ids=["ce", "multilabel_ce"])
def test_gradients_equal_a_run_on_the_labelled_rows_alone(multilabel):
    batch = _split(12, seed=1)
    loss = None
    if multilabel:
        batch["y"] = (torch.rand(12, C, generator=torch.Generator().manual_seed(2)) < 0.5).float()
        loss = L.MultiLabelCE()
    semi = semi_supervised(batch, labeled_size=5, seed=0)
    lab = semi["labeled"]
    only = {"x": batch["x"][lab], "y": batch["y"][lab]}
    model = _model()
    g_semi, out, _ = _grads(model, semi, loss=loss)
    g_only, out_only, _ = _grads(model, only, loss=loss)
    assert out.loss.item() == pytest.approx(out_only.loss.item(), rel=1e-6)
    for a, b in zip(g_semi, g_only):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)


def test_a_batch_without_labels_gives_zero_with_a_graph():
    batch = semi_supervised(_split(8), labeled_size=1, seed=0)
    batch = {**batch, "labeled": torch.zeros(8, dtype=torch.bool)}
    grads, out, _ = _grads(_model(), batch)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    assert all(torch.count_nonzero(g) == 0 for g in grads)


def test_vat_kl_sees_the_unlabelled_rows():
    from runner.tricks.vat import VAT

    full = _split(10, seed=3)
    semi = semi_supervised(full, labeled_size=2, seed=0)
    model = _model()
    model.eval()
    _, out_full, _ = _grads(model, full, [VAT()], seed=5)
    g_semi, out_semi, _ = _grads(model, semi, [VAT()], seed=5)
    # the same KL with and without labels: it is taken over every row
    assert out_semi.parts["vat_kl"].item() == pytest.approx(
        out_full.parts["vat_kl"].item(), rel=1e-6
    )
    # with no labelled row the whole gradient is VAT's, and it is not zero
    none = {**semi, "labeled": torch.zeros(10, dtype=torch.bool)}
    g_none, out_none, _ = _grads(model, none, [VAT()], seed=5)
    assert out_none.loss.item() == pytest.approx(out_none.parts["vat_kl"].item(), rel=1e-6)
    assert any(torch.count_nonzero(g) for g in g_none)
    # the unlabelled rows' part: the KL over the labelled rows alone is another number
    lab = semi["labeled"]
    _, out_lab, _ = _grads(model, {"x": full["x"][lab], "y": full["y"][lab]}, [VAT()], seed=5)
    assert out_lab.parts["vat_kl"].item() != pytest.approx(out_semi.parts["vat_kl"].item())


def test_rdrop_kl_sees_the_unlabelled_rows_and_ce_the_labelled():
    from runner.tricks.rdrop import RDrop

    full = _split(10, seed=4)
    semi = semi_supervised(full, labeled_size=3, seed=0)
    model = _model(dropout=0.3)
    _, a, _ = _grads(model, full, [RDrop()], seed=6)
    _, b, _ = _grads(model, semi, [RDrop()], seed=6)
    assert b.parts["rdrop_kl"].item() == pytest.approx(a.parts["rdrop_kl"].item(), rel=1e-6)
    n = len(full["y"])
    lab2 = torch.cat([semi["labeled"], semi["labeled"]])
    ce = torch.nn.functional.cross_entropy(b.logits[lab2], torch.cat([full["y"]] * 2)[lab2])
    assert b.loss.item() == pytest.approx((ce + b.parts["rdrop_kl"]).item(), rel=1e-6)
    assert len(b.logits) == 2 * n


def test_train_acc_counts_labelled_rows_only():
    from runner import engine

    batch = semi_supervised(_split(20, seed=5), labeled_size=7, seed=1)
    model = _model()
    _, out, st = _grads(model, batch)
    st.add_hits(out)
    st.count_hits()
    full_y = _split(20, seed=5)["y"]
    lab = batch["labeled"]
    want = (out.logits.argmax(-1)[lab] == full_y[lab]).float().mean().item()
    assert engine._read_acc(st)["train/acc"] == pytest.approx(want)


@pytest.mark.parametrize(
    "over",
    [
        ["dataset.labeled_fraction=0.1", "reg=[vat]"],
        ["dataset.labeled_size=64", "reg=[rdrop,label_smoothing]", "model.dropout=0.1"],
        [
            "dataset=mnist1d_multi",
            "loss=multilabel_ce",
            "dataset.labeled_fraction=0.2",
            "reg=[vat]",
        ],
    ],
    ids=["mnist1d-vat", "mnist1d-rdrop", "multi-vat"],
)
def test_semi_supervised_runs(over, tmp_path):
    s = train_run([*over, *FAST], tmp_path / "r")
    assert s["status"] == "completed", s.get("error")
    assert any("train/vat_kl" in r or "train/rdrop_kl" in r for r in read_rows(tmp_path / "r"))


def test_semi_supervised_csv_and_tweets(tmp_path):
    from runner.data import csv as csvdata
    from runner.data.tweets import build as tweets

    lines = ["f0,f1,label"] + [f"{i * 0.1:.1f},{(i % 5) * 0.2:.1f},{i % 3}" for i in range(100)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    d = csvdata.build(
        path=str(tmp_path / "t.csv"),
        feature_columns=["f0", "f1"],
        labeled_fraction=0.25,
        split_seed=2,
    )
    assert int(d.train["labeled"].sum()) == round(0.25 * len(d.train["y"]))
    assert "labeled" not in d.val and (d.val["y"] >= 0).all()
    t = tweets(
        tokenizer="bytes", train_size=40, val_size=20, test_size=20, max_len=24, labeled_size=10
    )
    assert int(t.train["labeled"].sum()) == 10 and int((t.train["y"] == -1).sum()) == 30


def test_multilabel_semi_supervised_resume_is_exact(tmp_path):
    """A kill between log steps: the pending multi-label counts (train/f1) and the best-val/f1
    figures go through the checkpoint exactly."""
    import json

    from conftest import TIMING_KEYS, cli, strip_timing

    args = [
        "dataset=mnist1d_multi",
        "loss=multilabel_ce",
        "dataset.labeled_fraction=0.3",
        "reg=[vat]",
        "trainer.max_steps=14",
        "trainer.batch_size=128",
        "trainer.log_every=4",
        "trainer.eval_every=5",
        "trainer.checkpoint_every=3",
        "trainer.progress=false",
    ]
    want, got = tmp_path / "want", tmp_path / "got"
    r = cli(["train", *args, f"hydra.run.dir={want}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli(
        ["train", *args, f"hydra.run.dir={got}"],
        cwd=tmp_path,
        env={"TRICKS_TEST_KILL_AT_STEP": "7"},
    )  # last checkpoint at step 6, mid-interval
    assert r.returncode != 0
    r = cli(["train", *args, "resume=true", f"hydra.run.dir={got}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert strip_timing(read_rows(got)) == strip_timing(read_rows(want))
    drop = (*TIMING_KEYS, "resumed")
    sa, sb = (
        {k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k not in drop}
        for d in (got, want)
    )
    assert sa == sb and sa["select"] == "val/f1" and sa["test/f1"] is not None
    assert any("train/f1" in row for row in read_rows(got))
