"""FGM / PGD forms (runner.tricks.fgm, runner.tricks.pgd), each against a direct computation:

- ``mode=adv`` (the blog's): the step's gradients are those of the loss at x + r alone; under
  accumulation the earlier micro-batches' gradients are kept;
- ``target=table`` (the blog's): the embedding matrix is perturbed on exactly the rows of the
  batch's tokens, by eps · G / ‖G‖_F with G = ∂loss/∂E, and restored bit-exactly;
- ``adv_weight``: the adversarial gradients are scaled; 0 (mode=both) is an exact no-op;
- bad combinations are one-line ConfigErrors at build time.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_reg_math import (
    assert_close_list,
    ce,
    grads,
    make_state,
    pgrad,
    record_deltas,
    run,
    tiny_batch,
    tiny_model,
)

from runner.errors import ConfigError
from runner.models.transformer import Transformer
from runner.tricks.fgm import FGM
from runner.tricks.pgd import PGD

V, T, C, B = 30, 7, 3, 5


def text_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(
        num_classes=C, vocab_size=V, max_len=T, width=16, depth=1, heads=2, dropout=0.0
    )


def text_batch(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, V // 2, (B, T), generator=g)  # tokens V//2.. never occur
    return {
        "x": x,
        "mask": torch.ones(B, T, dtype=torch.long),
        "y": torch.randint(0, C, (B,), generator=g),
    }


def text_ce(model, batch, table=None):
    """CE of `model` on `batch`, with the embedding matrix replaced by `table` if given."""
    m = model
    if table is not None:
        m = copy.deepcopy(model)
        with torch.no_grad():
            m.tok.weight.copy_(table)
    return F.cross_entropy(m(batch), batch["y"]), m


def table_grad(model, batch):
    m = copy.deepcopy(model)
    loss = F.cross_entropy(m(batch), batch["y"])
    (g,) = torch.autograd.grad(loss, m.tok.weight)
    return g


def record_tables(state) -> list:
    """The embedding matrix as every extra pass sees it (the first call is the clean pass)."""
    seen, inner, calls = [], state.forward, []

    def forward(batch, delta=None, keep_embed=False):
        if calls:
            seen.append(state.raw_model.tok.weight.detach().clone())
        calls.append(1)
        return inner(batch, delta=delta, keep_embed=keep_embed)

    state.forward = forward
    return seen


# -- mode=adv ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: FGM(eps=0.5, mode="adv"), lambda: PGD(eps=0.5, alpha=0.3, K=3, mode="adv")],
    ids=["fgm", "pgd"],
)
def test_adv_mode_step_is_the_gradient_at_x_plus_r_alone(make):
    model, batch = tiny_model(), tiny_batch()
    st = make_state(model, [make()])
    seen = record_deltas(st)
    run(st, batch)
    r = seen[-1]  # the perturbation of the pass whose gradients are kept
    adv = pgrad(ce(model, batch["x"] + r, batch["y"]), model)
    assert_close_list(grads(model), adv)
    # and it is the same perturbation as mode=both (only the clean gradient is left out)
    ref = tiny_model()
    st2 = make_state(ref, [make().__class__(**{**vars_of(make()), "mode": "both"})])
    seen2 = record_deltas(st2)
    run(st2, batch)
    torch.testing.assert_close(seen2[-1], r)
    clean = pgrad(ce(ref, batch["x"], batch["y"]), ref)
    assert_close_list(grads(ref), [a + b for a, b in zip(clean, adv)])


def vars_of(t) -> dict:
    keys = ("eps", "norm", "mode", "target", "adv_weight") + (
        ("alpha", "K") if hasattr(t, "K") else ()
    )
    return {k: getattr(t, k) for k in keys}


def test_adv_mode_keeps_earlier_micro_batches_gradients():
    """accum_steps=2: the first micro-batch's gradients stay, only the second's clean gradient is
    left out; each micro-batch's adversarial gradient counts 1/2."""
    model = tiny_model()
    b1, b2 = tiny_batch(seed=1), tiny_batch(seed=2)
    st = make_state(model, [FGM(eps=0.5, mode="adv")], accum=2)
    seen = record_deltas(st)
    run(st, b1)
    after1 = grads(model)
    run(st, b2)
    a1 = pgrad(ce(model, b1["x"] + seen[0], b1["y"]), model)
    a2 = pgrad(ce(model, b2["x"] + seen[1], b2["y"]), model)
    assert_close_list(after1, [a / 2 for a in a1])
    assert_close_list(grads(model), [(a + b) / 2 for a, b in zip(a1, a2)])


def test_adv_weight_scales_the_adversarial_gradients_and_zero_is_an_exact_noop():
    model, batch = tiny_model(), tiny_batch()
    st = make_state(model, [FGM(eps=0.5, adv_weight=0.25)])
    seen = record_deltas(st)
    run(st, batch)
    clean = pgrad(ce(model, batch["x"], batch["y"]), model)
    adv = pgrad(ce(model, batch["x"] + seen[0], batch["y"]), model)
    assert_close_list(grads(model), [a + 0.25 * b for a, b in zip(clean, adv)])

    for make in (lambda: FGM(adv_weight=0.0), lambda: PGD(adv_weight=0.0)):
        m = tiny_model()
        st = make_state(m, [make()])
        seen = record_deltas(st)
        out = run(st, batch)
        ref = tiny_model()
        F.cross_entropy(ref(batch), batch["y"]).backward()
        assert seen == [] and all(torch.equal(a, b) for a, b in zip(grads(m), grads(ref)))
        assert out.parts == {}


# -- target=table ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["both", "adv"])
def test_fgm_table_perturbs_exactly_the_batch_rows_normalised_over_the_matrix(mode):
    model, batch = text_model(), text_batch()
    w0 = model.tok.weight.detach().clone()
    st = make_state(model, [FGM(eps=0.5, target="table", mode=mode)])
    seen = record_tables(st)
    run(st, batch)
    assert len(seen) == 1
    G = table_grad(text_model(), batch)
    r = 0.5 * G / G.norm()
    diff = seen[0] - w0
    touched = torch.zeros(V, dtype=torch.bool)
    touched[batch["x"].unique()] = True
    assert (diff.abs().sum(1) > 0).tolist() == touched.tolist()  # exactly the batch's rows
    torch.testing.assert_close(diff, r)
    assert diff.norm().item() == pytest.approx(0.5, rel=1e-4)  # over the whole matrix
    assert torch.equal(model.tok.weight, w0)  # restored bit for bit

    adv_loss, m_adv = text_ce(text_model(), batch, table=w0 + r)
    adv = pgrad(adv_loss, m_adv)
    if mode == "adv":
        assert_close_list(grads(model), adv)
    else:
        clean_loss, m = text_ce(text_model(), batch)
        assert_close_list(grads(model), [a + b for a, b in zip(pgrad(clean_loss, m), adv)])


@pytest.mark.parametrize("mode", ["both", "adv"])
def test_pgd_table_steps_on_the_matrix_and_restores_it(mode):
    eps, alpha, K = 0.5, 0.3, 3
    model, batch = text_model(), text_batch()
    w0 = model.tok.weight.detach().clone()
    st = make_state(model, [PGD(eps=eps, alpha=alpha, K=K, target="table", mode=mode)])
    seen = record_tables(st)
    run(st, batch)
    assert torch.equal(model.tok.weight, w0)
    assert len(seen) == K
    G = table_grad(text_model(), batch)
    r = torch.zeros_like(G)
    for t in range(K):
        r = r + alpha * G / G.norm()
        r = r * min(1.0, eps / r.norm().item())
        torch.testing.assert_close(seen[t] - w0, r, rtol=1e-4, atol=1e-6)
        G = table_grad(text_model_with(w0 + r), batch)
    adv_loss, m_adv = text_ce(text_model(), batch, table=w0 + r)
    adv = pgrad(adv_loss, m_adv)
    if mode == "adv":
        assert_close_list(grads(model), adv, rtol=1e-4, atol=1e-6)
    else:
        clean_loss, m = text_ce(text_model(), batch)
        assert_close_list(
            grads(model), [a + b for a, b in zip(pgrad(clean_loss, m), adv)], rtol=1e-4, atol=1e-6
        )


def text_model_with(table):
    m = text_model()
    with torch.no_grad():
        m.tok.weight.copy_(table)
    return m


def test_table_equals_the_output_form_with_one_shared_delta_per_token():
    """Perturbing row E[v] is perturbing every position holding token v by the same r[v]: the
    table form's step equals the output form fed delta = r[ids] (a check of the bookkeeping)."""
    model, batch = text_model(), text_batch()
    st = make_state(model, [FGM(eps=0.5, target="table", mode="adv")])
    run(st, batch)
    G = table_grad(text_model(), batch)
    ref = text_model()
    out = F.cross_entropy(ref(batch, delta=(0.5 * G / G.norm())[batch["x"]]), batch["y"])
    assert_close_list(grads(model), pgrad(out, ref))


# -- bad input -------------------------------------------------------------------------------


def test_table_on_a_model_without_one_names_the_models_that_have_one():
    with pytest.raises(
        ConfigError,
        match=r"reg.fgm.target: table: MLP has no embedding table "
        r"\(allowed: output; table with model=transformer",
    ):
        make_state(tiny_model(), [FGM(target="table")])


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"mode": "blog"}, "reg.pgd.mode"),
        ({"target": "matrix"}, "reg.pgd.target"),
        ({"target": "table", "norm": "sample"}, "reg.pgd.norm"),
        ({"mode": "adv", "adv_weight": 0.0}, "reg.pgd.adv_weight"),
        ({"adv_weight": -1.0}, "reg.pgd.adv_weight"),
    ],
)
def test_bad_forms_are_one_line_errors(kw, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        PGD(**kw)


def test_adv_mode_refuses_a_second_backward_trick():
    with pytest.raises(ConfigError, match=r"reg.fgm.mode: adv replaces the clean backward"):
        make_state(tiny_model(), [FGM(mode="adv"), PGD()])


def test_models_expose_their_embedding_table_and_encoder():
    mlp = tiny_model()
    assert mlp.embedding_table() is None
    assert {id(p) for p in mlp.encoder_parameters()} == {
        id(p) for n, p in mlp.named_parameters() if not n.startswith("out.")
    }
    m = text_model()
    assert m.embedding_table() is m.tok.weight
    from runner.models.minilm import MiniLM

    lm = MiniLM(num_classes=3, max_len=16)
    assert lm.embedding_table() is lm.encoder.embeddings.word_embeddings.weight
    enc = {id(p) for p in lm.encoder_parameters()}
    names = [n for n, p in lm.named_parameters() if id(p) in enc]
    assert names and all(".layer." in n for n in names)  # the reference's 'layer' rule
    assert len(enc) == sum(".layer." in n for n, _ in lm.named_parameters())


# -- real runs on a text model ----------------------------------------------------------------

TEXT_RUN = [
    "dataset=tweets",
    "model=transformer",
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "model.dropout=0.1",
    "dataset.train_size=16",
    "dataset.val_size=8",
    "dataset.test_size=8",
    "dataset.max_len=24",
    "trainer.max_steps=2",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.batch_size=8",
    "trainer.accum_steps=2",
]


@pytest.mark.parametrize("name,mode", [("fgm", "adv"), ("fgm", "both"), ("pgd", "adv")])
def test_table_forms_train_on_the_transformer(name, mode, tmp_path):
    from conftest import read_rows, train_run

    s = train_run(
        [*TEXT_RUN, f"reg=[{name}]", f"reg.{name}.target=table", f"reg.{name}.mode={mode}"],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")
    assert any("train/adv_loss" in r for r in read_rows(tmp_path / "run"))


def test_table_on_mnist1d_is_refused_before_the_run(tmp_path):
    from conftest import FAST, train_run

    with pytest.raises(ConfigError, match="reg.fgm.target: table: MLP has no embedding table"):
        train_run([*FAST, "reg=[fgm]", "reg.fgm.target=table"], tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "case",
    [
        ["reg=[fgm]", "reg.fgm.target=table", "reg.fgm.mode=adv"],
        ["reg=[pgd]", "reg.pgd.target=table"],
        ["derived=[lazy]"],
    ],
    ids=["fgm-table", "pgd-table", "lazy"],
)
def test_table_forms_and_lazy_make_no_host_read_inside_a_step(case, monkeypatch, tmp_path):
    from test_perf import SyncCounter

    from conftest import train_run

    ov = [
        o
        for o in TEXT_RUN
        if not o.startswith(("trainer.max_steps", "trainer.eval_every", "trainer.log_every"))
    ]
    ov += ["trainer.max_steps=4", "trainer.eval_every=4", "trainer.log_every=4"]
    with monkeypatch.context() as m:
        c = SyncCounter(m)
        s = train_run(ov + case, tmp_path / "run")
    assert s["status"] == "completed", s.get("error")
    assert [n for log, n in c.per_step if not log] == [0, 0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fgm", "pgd"])
def test_the_blogs_form_on_minilm(name, tmp_path):
    """mode=adv target=table on the pretrained encoder: the table is the word embeddings."""
    from conftest import read_rows, train_run

    ov = [o for o in TEXT_RUN if not o.startswith("model.")]
    s = train_run(
        [
            *ov,
            "model=minilm",
            "optimizer.lr=5e-5",
            f"reg=[{name}]",
            f"reg.{name}.target=table",
            f"reg.{name}.mode=adv",
        ],
        tmp_path / "run",
    )
    assert s["status"] == "completed", s.get("error")
    assert any("train/adv_loss" in r for r in read_rows(tmp_path / "run"))
