"""LazyOptimizer (`derived=[lazy]`, runner.tricks.lazy) against a direct computation: after a
step, the rows of embedding tables whose tokens are absent from the batch are bit-identical
(values and optimizer state), every other row and parameter is the wrapped optimizer's plain step;
under accumulation a row seen in any micro-batch updates; through the engine, rows of tokens the
run never saw stay put while plain AdamW with weight decay moves them; resume is exact; a model
without embeddings is a no-op."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_reg_runs import resumes_exactly

from runner.models.transformer import Transformer
from runner.optim.lion import Lion
from runner.optim.sgdw import SGDW
from runner.optim.tiger import Tiger
from runner.tricks.lazy import Lazy

from conftest import FAST, read_rows, strip_timing, train_run

V, T, C, B = 40, 6, 3, 4

OPTIMIZERS = {
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "adamw-fused": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True),
    "lion": lambda ps: Lion(ps, lr=1e-3, weight_decay=0.3),
    "tiger": lambda ps: Tiger(ps, lr=1e-3, weight_decay=0.3),
    "sgd-momentum": lambda ps: SGDW(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
}


def model_(seed=0):
    torch.manual_seed(seed)
    return Transformer(
        num_classes=C, vocab_size=V, max_len=T, width=8, depth=1, heads=2, dropout=0.0
    )


def batch_(tokens: range, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(list(tokens))[torch.randint(0, len(tokens), (B, T), generator=g)]
    return {
        "x": x,
        "mask": torch.ones(B, T, dtype=torch.long),
        "y": torch.randint(0, C, (B,), generator=g),
    }


def lazy_opt(model, make):
    lazy = Lazy()
    lazy._name = "lazy"
    opt = lazy.wrap_optimizer(make(list(model.parameters())))
    lazy.setup(SimpleNamespace(raw_model=model))
    return opt, lazy


def step(model, opt, *batches):
    opt.zero_grad(set_to_none=True)
    for b in batches:
        (F.cross_entropy(model(b), b["y"]) / len(batches)).backward()
    opt.step()


def snapshot(model, opt):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())


def plain_step_from(snap, make, *batches):
    """The wrapped optimizer's own step from the same weights and state."""
    m = model_()
    m.load_state_dict(snap[0])
    opt = make(list(m.parameters()))
    opt.load_state_dict(copy.deepcopy(snap[1]))  # load_state_dict keeps the tensors it is given
    step(m, opt, *batches)
    return m, opt


def seen_rows(*batches) -> torch.Tensor:
    s = torch.zeros(V, dtype=torch.bool)
    for b in batches:
        s[b["x"].unique()] = True
    return s


def check_rows(model, opt, snap, ref, ref_opt, seen: torch.Tensor):
    """Table rows in `seen`: the plain step's; others: the snapshot's, values and state."""
    before = model_()
    before.load_state_dict(snap[0])
    before_state = snap[1]["state"]
    names = [n for n, _ in model.named_parameters()]
    ref_params = dict(ref.named_parameters())
    for i, (n, p) in enumerate(model.named_parameters()):
        want = ref_params[n].detach()
        st, ref_st = opt.state[p], ref_opt.state[ref_params[n]]
        if n != "tok.weight":  # every other parameter: the plain step, bit for bit
            assert torch.equal(p, want), n
            continue
        assert torch.equal(p[seen], want[seen])
        assert torch.equal(p[~seen], dict(before.named_parameters())[n][~seen])
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape:
                assert torch.equal(v[seen], ref_st[k][seen]), k
                old = before_state.get(i, {}).get(k)
                kept = old[~seen] if old is not None else torch.zeros_like(v[~seen])
                assert torch.equal(v[~seen], kept), k
    assert names  # the loop ran


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_rows_of_absent_tokens_keep_value_and_state(name):
    make = OPTIMIZERS[name]
    model = model_()
    opt, _ = lazy_opt(model, make)
    b1, b2 = batch_(range(1, 20), seed=1), batch_(range(10, 30), seed=2)
    # step 1 from empty state: absent rows keep their value and stay at the zero initial state
    snap = snapshot(model, opt)
    step(model, opt, b1)
    check_rows(model, opt, snap, *plain_step_from(snap, make, b1), seen_rows(b1))
    # step 2: rows seen in step 1 only have momentum, and still do not move
    snap = snapshot(model, opt)
    step(model, opt, b2)
    ref, ref_opt = plain_step_from(snap, make, b2)
    check_rows(model, opt, snap, ref, ref_opt, seen_rows(b2))
    stale = seen_rows(b1) & ~seen_rows(b2)
    assert not torch.equal(ref.tok.weight[stale], model.tok.weight[stale])  # plain moves them


def test_under_accumulation_a_row_seen_in_any_micro_batch_updates():
    make = OPTIMIZERS["lion"]
    model = model_()
    opt, _ = lazy_opt(model, make)
    b1, b2 = batch_(range(1, 12), seed=3), batch_(range(20, 32), seed=4)
    step(model, opt, batch_(range(1, 40), seed=5))  # momentum on many rows
    snap = snapshot(model, opt)
    step(model, opt, b1, b2)
    seen = seen_rows(b1, b2)
    assert seen[1:12].any() and seen[20:32].any() and not seen[12:20].any()
    check_rows(model, opt, snap, *plain_step_from(snap, make, b1, b2), seen)


def test_a_model_without_embeddings_is_a_noop(capsys):
    torch.manual_seed(0)
    from runner.models.mlp import MLP

    m1 = MLP(in_dim=5, num_classes=3, hidden=8, depth=1, dropout=0.0)
    m2 = copy.deepcopy(m1)
    opt1, lazy = lazy_opt(m1, OPTIMIZERS["adamw"])
    assert lazy.tables == []
    assert "MLP has no embedding table, so LazyOptimizer changes nothing" in capsys.readouterr().out
    opt2 = OPTIMIZERS["adamw"](list(m2.parameters()))
    b = {"x": torch.randn(4, 5), "y": torch.tensor([0, 1, 2, 0])}
    for m, o in ((m1, opt1), (m2, opt2)):
        step(m, o, b)
    assert all(torch.equal(a, c) for a, c in zip(m1.parameters(), m2.parameters()))


# -- through the engine ------------------------------------------------------------------------

TEXT = [
    "dataset=tweets",
    "model=transformer",
    "model.width=16",
    "model.depth=1",
    "model.heads=2",
    "model.dropout=0.1",
    "dataset.train_size=16",
    "dataset.val_size=8",
    "dataset.test_size=8",
    "dataset.max_len=16",
    "trainer.log_every=1",
    "trainer.progress=false",
    "trainer.batch_size=4",
    "trainer.accum_steps=2",
    "optimizer=adamw",
]


def _table(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return ckpt["model"]["tok.weight"]


def test_unseen_tokens_stay_put_through_the_engine(tmp_path):
    """AdamW with weight decay moves every row; with derived=[lazy] the rows of tokens the run
    never saw equal those of a run without decay (where Adam, with zero moments, moves none)."""
    ov = TEXT + ["trainer.max_steps=3", "trainer.eval_every=3"]
    runs = {
        "still": ["optimizer.weight_decay=0", "optimizer.decay_bias_and_norm=true"],
        "plain": ["optimizer.weight_decay=0.5", "optimizer.decay_bias_and_norm=true"],
        "lazy": [
            "optimizer.weight_decay=0.5",
            "optimizer.decay_bias_and_norm=true",
            "derived=[lazy]",
        ],
    }
    tables = {}
    for name, extra in runs.items():
        s = train_run(ov + extra, tmp_path / name)
        assert s["status"] == "completed", s.get("error")
        tables[name] = _table(tmp_path / name)
    moved = (tables["still"] != tables["plain"]).any(dim=1)
    lazy_kept = (tables["lazy"] == tables["still"]).all(dim=1)
    unseen = lazy_kept & moved  # rows decay moved in the plain run, lazy kept
    assert unseen.sum() > 1000  # most of the 30522-token vocabulary is never seen
    assert not lazy_kept.all()  # the rows of the tokens seen did move


def test_resume_is_exact(tmp_path, monkeypatch):
    ov = TEXT + [
        "trainer.max_steps=6",
        "trainer.eval_every=3",
        "trainer.checkpoint_every=2",
        "optimizer=lion",
        "optimizer.weight_decay=0.1",
        "derived=[lazy]",
    ]
    want, got = resumes_exactly(ov, tmp_path, monkeypatch, kill_at=3)
    assert torch.equal(_table(got), _table(want))


def test_derived_lazy_on_mnist1d_trains_as_without_it(tmp_path):
    a = train_run(FAST + ["model=mlp"], tmp_path / "a")
    b = train_run(FAST + ["model=mlp", "derived=[lazy]"], tmp_path / "b")
    assert a["status"] == b["status"] == "completed"
    assert strip_timing(read_rows(tmp_path / "a")) == strip_timing(read_rows(tmp_path / "b"))
