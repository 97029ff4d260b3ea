"""The `loss` group (runner.losses): each loss, prediction rule, metric and divergence against a
direct computation; multi-label runs end to end (selection on val/f1, compare --metric test/f1);
R-Drop / VAT use the loss's divergence; bad input is one line."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from runner import losses as L
from runner.errors import ConfigError

from conftest import FAST, cli, read_rows, train_run

N, C = 7, 5


def scores_and_labels(seed=0, n=N, c=C):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g) * 2
    y = (torch.rand(n, c, generator=g) < 0.4).float()
    y[0] = 0  # a row with no positive label
    y[1] = 1  # a row with every label
    return s, y


# -- the losses ----------------------------------------------------------------------------------


def test_multilabel_ce_is_the_blogs_formula():
    s, y = scores_and_labels()
    want = []
    for si, yi in zip(s.tolist(), y.tolist()):
        neg = sum(math.exp(v) for v, t in zip(si, yi) if t == 0)
        pos = sum(math.exp(-v) for v, t in zip(si, yi) if t == 1)
        want.append(math.log(1 + neg) + math.log(1 + pos))
    got = L.multilabel_ce(s, y)
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
    assert L.MultiLabelCE()(s, y).item() == pytest.approx(sum(want) / N, abs=1e-5)
    # the loss is small exactly when positives score > 0 and negatives < 0 by a margin
    assert L.MultiLabelCE()(10 * (2 * y - 1), y).item() < 1e-3


def test_bce_is_the_mean_binary_cross_entropy():
    s, y = scores_and_labels()
    p = torch.sigmoid(s)
    want = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert L.BCE()(s, y).item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.allclose(
        L.BCE().per_sample(s, y), -(y * p.log() + (1 - y) * (1 - p).log()).mean(-1), atol=1e-6
    )


def test_ce_is_todays_cross_entropy_bit_for_bit():
    g = torch.Generator().manual_seed(3)
    logits, y = torch.randn(N, C, generator=g), torch.randint(0, C, (N,), generator=g)
    assert torch.equal(L.CE()(logits, y), F.cross_entropy(logits.float(), y))
    assert torch.equal(L.CE().sum(logits, y), F.cross_entropy(logits, y, reduction="sum"))


def test_ce_divergence_is_the_old_kl_and_symmetric_kl_bit_for_bit():
    """The formulas rdrop.py and vat.py computed before the loss module existed."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(N, C, generator=g), torch.randn(N, C, generator=g)
    lp1, lp2 = F.log_softmax(a, -1), F.log_softmax(b, -1)
    old_sym = ((lp1.exp() - lp2.exp()) * (lp1 - lp2)).sum(-1)
    old_kl = (lp1.exp() * (lp1 - lp2)).sum(-1).mean()
    assert torch.equal(L.CE().divergence(a, b, symmetric=True), old_sym)
    assert torch.equal(L.CE().divergence(a, b).mean(), old_kl)
    from runner.tricks.rdrop import symmetric_kl
    from runner.tricks.vat import kl_from_logits

    assert torch.equal(symmetric_kl(a, b), old_sym) and torch.equal(kl_from_logits(a, b), old_kl)


@pytest.mark.parametrize("loss", [L.MultiLabelCE(), L.BCE()], ids=["multilabel_ce", "bce"])
def test_multilabel_divergence_is_the_blogs_and_the_bernoulli_symmetric_kl(loss):
    s, _ = scores_and_labels(1)
    t, _ = scores_and_labels(2)
    direct = ((torch.sigmoid(s) - torch.sigmoid(t)) * (s - t)).sum(-1)
    for sym in (False, True):
        assert torch.allclose(loss.divergence(s, t, symmetric=sym), direct)
    p, q = torch.sigmoid(s).double(), torch.sigmoid(t).double()
    bern = lambda a, b: a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()
    assert torch.allclose(direct.double(), (bern(p, q) + bern(q, p)).sum(-1), atol=1e-5)
    assert torch.equal(loss.divergence(s, s), torch.zeros(len(s)))


# -- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [L.MultiLabelCE(), L.BCE()], ids=["multilabel_ce", "bce"])
def test_multilabel_metrics_match_sklearn_and_ignore_batching(loss):
    from sklearn.metrics import accuracy_score, f1_score

    s, y = scores_and_labels(5, n=40, c=6)
    pred = (s > 0).int().numpy()  # threshold 0 (bce: sigmoid > 0.5 is the same)
    assert torch.equal(loss.predict(s), torch.sigmoid(s) > 0.5)
    m = loss.metrics(loss.counts(s, y))
    yt = y.int().numpy()
    assert m["acc"] == pytest.approx(accuracy_score(yt, pred))  # exact match
    assert m["f1"] == pytest.approx(f1_score(yt, pred, average="micro", zero_division=0))
    assert m["f1_macro"] == pytest.approx(f1_score(yt, pred, average="macro", zero_division=0))
    parts = loss.counts(s[:13], y[:13]) + loss.counts(s[13:], y[13:])
    assert loss.metrics(parts) == m


def test_ce_metrics_are_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    assert L.CE().metrics(L.CE().counts(logits, y)) == {"acc": 2 / 3}


def test_select_follows_the_task_and_rejects_what_is_not_logged():
    assert L.select_metric("auto", L.CE()) == "val/acc"
    assert L.select_metric("auto", L.MultiLabelCE()) == "val/f1"
    assert L.select_metric("val/f1_macro", L.BCE()) == "val/f1_macro"
    with pytest.raises(
        ConfigError,
        match=r"trainer.select: 'val/f1' is not a validation "
        r"metric of loss=ce \(allowed: auto, val/acc\)",
    ):
        L.select_metric("val/f1", L.CE())


# -- the consistency tricks ask the loss ------------------------------------------------------


def _state(loss, model):
    from runner import device as devmod
    from runner import engine

    st = engine.State(
        cfg=SimpleNamespace(accum_steps=1),
        plan=devmod.plan("cpu", "fp32"),
        model=model,
        raw_model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=None,
        tricks=[],
        data=None,
        batcher=None,
        total_steps=1,
        loss=loss,
    )
    engine._reset_acc(st)
    return st


def test_rdrop_and_vat_use_the_multilabel_divergence():
    from runner.models.mlp import MLP
    from runner.tricks.rdrop import RDrop
    from runner.tricks.vat import VAT

    torch.manual_seed(0)
    model = MLP(in_dim=4, num_classes=C, hidden=8, depth=2, dropout=0.3)
    g = torch.Generator().manual_seed(1)
    batch = {
        "x": torch.randn(6, 4, generator=g),
        "y": (torch.rand(6, C, generator=g) < 0.5).float(),
    }
    st = _state(L.MultiLabelCE(), model)
    rd = RDrop(alpha=4.0)
    out = rd.loss(st, batch, lambda b: st.forward(b))
    s, t = out.logits[:6], out.logits[6:]
    blog = ((torch.sigmoid(s) - torch.sigmoid(t)) * (s - t)).sum(-1).mean()
    assert out.parts["rdrop_kl"].item() == pytest.approx(blog.item(), rel=1e-6)
    ce = L.multilabel_ce(out.logits, out.y).mean()
    assert out.loss.item() == pytest.approx((ce + blog).item(), rel=1e-6)

    model.eval()  # VAT: the divergence at the adversarial point, by the same recipe
    st = _state(L.MultiLabelCE(), model)
    st._keep_embed = True
    torch.manual_seed(7)
    out = VAT(eps=1.0, xi=10.0, iters=1).loss(st, batch, lambda b: st.forward(b, keep_embed=True))
    from runner.tricks.vat import vat_perturbation

    torch.manual_seed(7)
    p = model(batch).detach()
    r = vat_perturbation(st, batch, p, batch["x"].shape, torch.float32, 1.0, 10.0, 1)
    q = model(batch, delta=r)
    blog = ((torch.sigmoid(p) - torch.sigmoid(q)) * (p - q)).sum(-1).mean()
    assert out.parts["vat_kl"].item() == pytest.approx(blog.item(), rel=1e-5)


# -- runs ----------------------------------------------------------------------------------------

MULTI = ["dataset=mnist1d_multi", "loss=multilabel_ce"]


def test_multilabel_run_selects_on_val_f1_and_reports_test_f1(tmp_path):
    from runner.main import objective

    s = train_run([*MULTI, *FAST, "trainer.max_steps=12"], tmp_path / "r")
    assert s["status"] == "completed", s.get("error")
    rows = [r for r in read_rows(tmp_path / "r") if "val/f1" in r]
    assert len(rows) == 4
    best = max(rows, key=lambda r: r["val/f1"])  # first of equal values: update_best keeps it
    best = next(r for r in rows if r["val/f1"] == best["val/f1"])
    assert s["select"] == "val/f1" and s["best/step"] == best["step"]
    for k in ("f1", "f1_macro", "acc", "loss"):
        assert s[f"test/{k}"] == best[f"test/{k}"]
    assert s["best/val/f1"] == best["val/f1"] and s["best/val/acc"] == best["val/acc"]
    assert s["final/test/f1"] == rows[-1]["test/f1"]
    assert objective(s) == s["best/val/f1"]
    train = [r for r in read_rows(tmp_path / "r") if "train/loss" in r]
    assert all({"train/acc", "train/f1", "train/f1_macro"} <= set(r) for r in train)
    # trainer.select=val/acc switches the selection (and the objective)
    s2 = train_run(
        [*MULTI, *FAST, "trainer.max_steps=12", "trainer.select=val/acc"], tmp_path / "r2"
    )
    accs = [r["val/acc"] for r in read_rows(tmp_path / "r2") if "val/acc" in r]
    assert s2["best/val/acc"] == max(accs) and objective(s2) == max(accs)


def test_single_label_summary_keeps_its_keys(tmp_path):
    s = train_run(FAST, tmp_path / "r")
    assert s["select"] == "val/acc" and "test/f1" not in s and "best/val/f1" not in s
    assert {"best/val/acc", "test/acc", "test/loss", "final/test/acc"} <= set(s)


@pytest.mark.parametrize(
    "reg", ["[fgm]", "[pgd]", "[gradpen]", "[paramgradpen]", "[rdrop]", "[vat]", "[rdrop,fgm]"]
)
def test_tricks_train_on_multilabel(reg, tmp_path):
    over = [*MULTI, *FAST, f"reg={reg}", "model.dropout=0.1"]
    s = train_run(over, tmp_path / "r")
    assert s["status"] == "completed", s.get("error")
    assert all(
        math.isfinite(r["train/loss"]) for r in read_rows(tmp_path / "r") if "train/loss" in r
    )


def test_compare_metric_test_f1(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli(
        [
            "train",
            "-m",
            "dataset=mnist1d_multi",
            "loss=multilabel_ce,bce",
            *FAST,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    f1 = sorted(
        json.loads((sweep / str(i) / "summary.json").read_text())["test/f1"] for i in (0, 1)
    )
    r = cli(
        ["compare", str(sweep), "--metric", "test/f1", "--out", str(tmp_path / "rep")], cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loss=multilabel_ce" in r.stdout and "loss=bce" in r.stdout
    import csv

    rows = list(csv.DictReader((tmp_path / "rep" / "summary.csv").open()))
    assert sorted(float(x["mean"]) for x in rows) == pytest.approx(f1)


# -- bad input -------------------------------------------------------------------------------------


def test_loss_and_labels_must_agree_one_line(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^loss: multilabel_ce needs multi-hot labels "
        r"\(several per row\); dataset=mnist1d has one label per row "
        r"\(allowed: ce\)$",
    ):
        train_run(["loss=multilabel_ce", *FAST], tmp_path / "a")
    with pytest.raises(
        ConfigError,
        match=r"^loss: ce needs one label per row; "
        r"dataset=mnist1d_multi has multi-hot labels \(allowed: multilabel_ce, "
        r"bce\)$",
    ):
        train_run(["dataset=mnist1d_multi", *FAST], tmp_path / "b")
    with pytest.raises(ConfigError, match=r"^reg.label_smoothing: .*multi-label"):
        train_run([*MULTI, "reg=[label_smoothing]", *FAST], tmp_path / "c")
    with pytest.raises(ConfigError, match=r"^trainer.select: 'val/f1' is not"):
        train_run(["trainer.select=val/f1", *FAST], tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_bad_label_cli_one_line(tmp_path):
    (tmp_path / "t.csv").write_text("f0,a,b\n1.0,0,1\n2.0,2,0\n3.0,1,1\n")
    r = cli(
        [
            "train",
            "dataset=csv",
            f"dataset.path={tmp_path / 't.csv'}",
            "dataset.feature_columns=[f0]",
            "dataset.label_columns=[a,b]",
            "loss=bce",
            *FAST,
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: dataset.label_columns: column 'a' in t.csv has the value 2 (row 2); "
        "multi-hot columns hold 0 or 1"
    ]


# -- multi-hot labels from a CSV -------------------------------------------------------------------


def test_csv_label_columns_and_delimiter_give_the_same_multi_hot_labels(tmp_path):
    from runner.data.csv import build

    lines = ["f0,f1,a,b,c,tags"]
    g = torch.Generator().manual_seed(0)
    want = (torch.rand(60, 3, generator=g) < 0.5).int().tolist()
    for i, row in enumerate(want):
        tags = "|".join(n for n, v in zip("abc", row) if v)
        lines.append(f"{i * 0.1:.2f},{(i % 7) * 0.3:.2f},{row[0]},{row[1]},{row[2]},{tags}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    kw = dict(path=str(tmp_path / "t.csv"), feature_columns=["f0", "f1"], split_seed=3)
    a = build(label_columns=["a", "b", "c"], **kw)
    b = build(label_column="tags", label_delimiter="|", **kw)
    assert a.class_names == b.class_names == ["a", "b", "c"]
    for split in ("train", "val", "test"):
        ya, yb = getattr(a, split)["y"], getattr(b, split)["y"]
        assert ya.dtype == torch.float32 and ya.shape[1] == 3 and torch.equal(ya, yb)
    # every row is there with its own labels (the splits are a permutation of the file)
    rows = {
        tuple(x.tolist()): tuple(y.tolist())
        for s in ("train", "val", "test")
        for x, y in zip(getattr(a, s)["x"], getattr(a, s)["y"])
    }
    assert sorted(rows.values()) == sorted(tuple(float(v) for v in r) for r in want)
