"""The regularizers' math, each against a direct computation on a tiny model with fixed weights.

Every trick runs through the engine's real loss/backward chains (`engine.build_chains`) on a
hand-built State; the reference is written out with plain torch autograd.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from runner import device as devmod
from runner import engine
from runner.data.batching import IndexBatcher
from runner.models.cnn1d import CNN1d
from runner.models.mlp import MLP
from runner.tricks.childtuning_d import ChildTuningD, fisher_diag, top_fraction_mask
from runner.tricks.childtuning_f import ChildTuningF
from runner.tricks.fgm import FGM
from runner.tricks.flooding import Flooding
from runner.tricks.gradpen import GradPen
from runner.tricks.label_smoothing import LabelSmoothing
from runner.tricks.noise import Noise
from runner.tricks.paramgradpen import ParamGradPen
from runner.tricks.pgd import PGD
from runner.tricks.rdrop import RDrop
from runner.tricks.spectral import Spectral, weight_matrices
from runner.tricks.vat import VAT

B, D, C = 6, 5, 4


def tiny_model(dropout: float = 0.0, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_dim=D, num_classes=C, hidden=8, depth=2, dropout=dropout)


def tiny_batch(seed: int = 1, n: int = B) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, D, generator=g), "y": torch.randint(0, C, (n,), generator=g)}


def make_state(model, tricks, accum: int = 1, batcher=None, seed: int = 0, loss=None, setup=True):
    """A State for `model` and `tricks` on the CPU (fp32), with an SGD optimizer (lr 0.1); each
    trick named and (with `setup`) set up. Shared with test_semisup."""
    st = engine.State(
        cfg=SimpleNamespace(accum_steps=accum),
        plan=devmod.plan("cpu", "fp32"),
        model=model,
        raw_model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=None,
        tricks=list(tricks),
        data=None,
        batcher=batcher,
        total_steps=1,
        seed=seed,
        loss=loss,
    )
    st._keep_embed = any(t.needs_embed_grad for t in tricks)
    engine._reset_acc(st)
    for t in tricks:
        t._name = type(t).__name__.lower()
        if setup:
            t.setup(st)
    return st


def run(state, batch):
    """One micro-batch through the loss and backward chains; returns the Out."""
    loss_fn, bwd_fn = engine.build_chains(state)
    out = loss_fn(batch)
    bwd_fn(out, batch)
    return out


def record_deltas(state) -> list:
    """Wrap state.forward so every extra pass's perturbation (delta) is recorded."""
    seen, inner = [], state.forward

    def forward(batch, delta=None, keep_embed=False):
        if delta is not None:
            seen.append(delta.detach().clone())
        return inner(batch, delta=delta, keep_embed=keep_embed)

    state.forward = forward
    return seen


def grads(model) -> list:
    return [p.grad.clone() for p in model.parameters()]


def ce(model, x, y):
    return F.cross_entropy(model({"x": x}), y)


def pgrad(loss, model, create_graph=False):
    return list(torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph))


def plain_grads(batch) -> list:
    m = tiny_model()
    return pgrad(ce(m, batch["x"], batch["y"]), m)


def assert_close_list(a, b, **kw):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, **kw)


# -- R-Drop --------------------------------------------------------------------------------


def test_rdrop_loss_is_ce_plus_quarter_alpha_symmetric_kl_by_hand():
    model, batch = tiny_model(dropout=0.3), tiny_batch()
    st = make_state(model, [RDrop(alpha=4.0)])
    torch.manual_seed(7)
    out = run(st, batch)
    assert out.logits.shape[0] == 2 * B  # one forward of the doubled batch

    torch.manual_seed(7)  # same dropout masks
    xx, yy = torch.cat([batch["x"]] * 2), torch.cat([batch["y"]] * 2)
    logits = model({"x": xx})
    p1, p2 = logits[:B].softmax(-1), logits[B:].softmax(-1)
    kl12 = (p1 * (p1.log() - p2.log())).sum(-1)
    kl21 = (p2 * (p2.log() - p1.log())).sum(-1)
    expected = F.cross_entropy(logits, yy) + 4.0 / 4 * (kl12 + kl21).mean()
    torch.testing.assert_close(out.loss, expected)
    assert out.parts["rdrop_kl"] > 0  # the two dropout passes differ
    torch.testing.assert_close(out.parts["rdrop_kl"], (kl12 + kl21).mean())
    model.zero_grad()
    expected.backward()  # the gradients flow through both sides of the KL
    st2 = make_state(tiny_model(dropout=0.3), [RDrop(alpha=4.0)])
    torch.manual_seed(7)
    run(st2, batch)
    assert_close_list(grads(st2.raw_model), grads(model))


def test_rdrop_warns_once_without_dropout(capsys):
    make_state(tiny_model(dropout=0.0), [RDrop()])
    assert "reg.rdrop" in capsys.readouterr().err
    make_state(tiny_model(dropout=0.1), [RDrop()])
    assert capsys.readouterr().err == ""


# -- FGM / PGD -----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["global", "sample"])
def test_fgm_perturbation_and_accumulated_gradients(norm):
    model, batch = tiny_model(), tiny_batch()
    x0 = batch["x"].clone()
    w0 = [p.detach().clone() for p in model.parameters()]
    st = make_state(model, [FGM(eps=0.5, norm=norm)])
    seen = record_deltas(st)
    run(st, batch)

    # direct: r = eps * g / ||g||, g = dCE/dx
    xr = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ce(model, xr, batch["y"]), xr)
    if norm == "global":
        r = 0.5 * g / g.norm()
    else:
        r = 0.5 * g / g.norm(dim=1, keepdim=True)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], r)
    if norm == "global":
        assert seen[0].norm().item() == pytest.approx(0.5, rel=1e-5)
    else:
        torch.testing.assert_close(seen[0].norm(dim=1), torch.full((B,), 0.5, dtype=r.dtype))
    # adversarial gradients accumulate on the clean ones
    clean = pgrad(ce(model, x0, batch["y"]), model)
    adv = pgrad(ce(model, x0 + r, batch["y"]), model)
    assert_close_list(grads(model), [a + b for a, b in zip(clean, adv)])
    # the embedding (here the input) and the weights are untouched, bit for bit
    assert torch.equal(batch["x"], x0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w0))


def test_fgm_composes_with_rdrop_on_the_doubled_batch():
    """R-Drop doubles the batch inside the loss chain; FGM's backward hook gets the original batch
    and must perturb the doubled one (Out.batch) consistently."""
    model, batch = tiny_model(dropout=0.2), tiny_batch()
    st = make_state(model, [RDrop(alpha=2.0), FGM(eps=1.0)])
    assert [t.order for t in st.tricks] == [30, 70]
    seen = record_deltas(st)
    torch.manual_seed(3)
    run(st, batch)
    assert seen[0].shape == (2 * B, D)

    ref = tiny_model(dropout=0.2)
    torch.manual_seed(3)
    xx = torch.cat([batch["x"]] * 2).requires_grad_(True)
    yy = torch.cat([batch["y"]] * 2)
    logits = ref({"x": xx})
    lp = logits.log_softmax(-1)
    kl = ((lp[:B].exp() - lp[B:].exp()) * (lp[:B] - lp[B:])).sum(-1).mean()
    (F.cross_entropy(logits, yy) + 2.0 / 4 * kl).backward()
    r = xx.grad / xx.grad.norm()
    F.cross_entropy(ref({"x": xx.detach() + r}), yy).backward()
    torch.testing.assert_close(seen[0], r)
    assert_close_list(grads(model), grads(ref))


def test_fgm_gradient_scaled_by_accumulation_gives_the_same_direction():
    model, batch = tiny_model(), tiny_batch()
    st = make_state(model, [FGM(eps=0.5)], accum=4)
    seen = record_deltas(st)
    run(st, batch)
    xr = batch["x"].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ce(model, xr, batch["y"]), xr)
    torch.testing.assert_close(seen[0], 0.5 * g / g.norm())
    clean = pgrad(ce(model, batch["x"], batch["y"]), model)
    adv = pgrad(ce(model, batch["x"] + seen[0], batch["y"]), model)
    assert_close_list(grads(model), [(a + b) / 4 for a, b in zip(clean, adv)])


def _proj(r, eps):
    n = r.norm()
    return r if n <= eps else r * (eps / n)


def test_pgd_k_projected_steps_last_step_accumulates():
    model, batch = tiny_model(), tiny_batch()
    eps, alpha, K = 0.5, 0.3, 3
    st = make_state(model, [PGD(eps=eps, alpha=alpha, K=K)])
    seen = record_deltas(st)
    run(st, batch)

    x, y = batch["x"], batch["y"]
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ce(model, xr, y), xr)
    r = torch.zeros_like(x)
    rs = []
    for _ in range(K):
        r = _proj(r + alpha * g / g.norm(), eps)
        rs.append(r)
        d = r.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(ce(model, x + d, y), d)
    assert len(seen) == K
    for got, want in zip(seen, rs):
        torch.testing.assert_close(got, want)
    assert rs[-1].norm().item() == pytest.approx(eps, rel=1e-5)  # the projection was active
    clean = pgrad(ce(model, x, y), model)
    adv = pgrad(ce(model, x + rs[-1], y), model)
    assert_close_list(grads(model), [a + b for a, b in zip(clean, adv)])
    assert torch.equal(batch["x"], x)


# -- VAT -----------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["global", "sample"])
def test_vat_perturbation_has_norm_eps_and_loss_matches(norm):
    model, batch = tiny_model(), tiny_batch()
    eps, xi, w = 0.7, 10.0, 1.5
    st = make_state(model, [VAT(eps=eps, xi=xi, iters=1, weight=w, norm=norm)])
    seen = record_deltas(st)
    torch.manual_seed(11)
    out = run(st, batch)

    def normalize(t):
        return t / (t.norm() if norm == "global" else t.norm(dim=1, keepdim=True))

    def kl(p_logits, q_logits):
        p = p_logits.softmax(-1)
        return (p * (p.log() - q_logits.log_softmax(-1))).sum(-1).mean()

    x, y = batch["x"], batch["y"]
    torch.manual_seed(11)
    clean = model({"x": x})
    u = torch.randn(x.shape)
    d = (xi * normalize(u)).requires_grad_(True)
    (g,) = torch.autograd.grad(kl(clean.detach(), model({"x": x + d})), d)
    r = eps * normalize(g)
    expected = F.cross_entropy(clean, y) + w * kl(clean.detach(), model({"x": x + r}))
    torch.testing.assert_close(seen[-1], r)
    if norm == "global":
        assert seen[-1].norm().item() == pytest.approx(eps, rel=1e-5)
    else:
        torch.testing.assert_close(seen[-1].norm(dim=1), torch.full((B,), eps, dtype=r.dtype))
    torch.testing.assert_close(out.loss, expected)
    assert out.parts["vat_kl"] > 0


# -- gradient penalties --------------------------------------------------------------------


def test_gradpen_matches_autograd_double_backward():
    model, batch = tiny_model(), tiny_batch()
    st = make_state(model, [GradPen(eps=0.8)])
    out = run(st, batch)
    ref = tiny_model()
    xr = batch["x"].clone().requires_grad_(True)
    loss = ce(ref, xr, batch["y"])
    (g,) = torch.autograd.grad(loss, xr, create_graph=True)
    total = loss + 0.8 / 2 * g.pow(2).sum()
    torch.testing.assert_close(out.loss, total)
    assert_close_list(grads(model), pgrad(total, ref))


def test_paramgradpen_matches_autograd_double_backward():
    model, batch = tiny_model(), tiny_batch()
    st = make_state(model, [ParamGradPen(gamma=0.3)])
    out = run(st, batch)
    ref = tiny_model()
    loss = ce(ref, batch["x"], batch["y"])
    gs = pgrad(loss, ref, create_graph=True)
    total = loss + 0.3 / 4 * sum(g.pow(2).sum() for g in gs)
    torch.testing.assert_close(out.loss, total)
    sq = sum(g.pow(2).sum() for g in gs).detach()
    torch.testing.assert_close(out.parts["paramgradpen_sq"], sq)
    assert_close_list(grads(model), pgrad(total, ref))


# -- flooding ------------------------------------------------------------------------------


def test_flooding_flips_the_gradient_below_b_and_is_plain_above():
    batch = tiny_batch()
    plain = plain_grads(batch)
    loss0 = ce(tiny_model(), batch["x"], batch["y"]).item()

    below = tiny_model()  # b above the loss: ascent
    out = run(make_state(below, [Flooding(b=loss0 + 1.0)]), batch)
    assert_close_list(grads(below), [-g for g in plain])
    assert out.parts["flood_active_frac"].item() == 1.0
    assert out.loss.item() == pytest.approx(2 * (loss0 + 1.0) - loss0)

    above = tiny_model()  # b below the loss: plain descent
    out = run(make_state(above, [Flooding(b=loss0 / 2)]), batch)
    assert_close_list(grads(above), plain)
    assert out.parts["flood_active_frac"].item() == 0.0
    assert out.loss.item() == pytest.approx(loss0)


# -- ChildTuning ---------------------------------------------------------------------------


def _grads_after_on_grads(trick, batch, model):
    st = make_state(model, [trick])
    run(st, batch)
    trick.on_grads(st)
    return grads(model)


def test_childtuning_f_p1_changes_nothing_and_draws_nothing():
    batch = tiny_batch()
    plain = plain_grads(batch)
    rng = torch.get_rng_state()
    got = _grads_after_on_grads(ChildTuningF(p=1.0), batch, tiny_model())
    assert all(torch.equal(a, b) for a, b in zip(got, plain))
    assert torch.equal(torch.get_rng_state(), rng)


def test_childtuning_f_masks_with_bernoulli_p_and_rescales():
    from runner.tricks.childtuning_f import BITS, keep_threshold

    batch = tiny_batch()
    plain = plain_grads(batch)
    model = tiny_model()
    torch.manual_seed(5)
    got = _grads_after_on_grads(ChildTuningF(p=0.25), batch, model)
    # direct: four 16-bit quarters per 64-bit draw, low 15 bits < p * 2^15, kept entries / p
    n = sum(g.numel() for g in plain)
    torch.manual_seed(5)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()
    quarters = [(int(w) >> (16 * j)) & 0x7FFF for w in words.tolist() for j in range(4)][:n]
    keep = torch.tensor([q < 0.25 * 2**15 for q in quarters])
    masks, off = [], 0
    for g in plain:
        masks.append(keep[off : off + g.numel()].view_as(g).float())
        off += g.numel()
    assert_close_list(got, [g * m / 0.25 for g, m in zip(plain, masks)])
    assert keep_threshold(0.25) == 0.25 * 2**BITS
    kept = keep.float().mean().item()
    assert 0.15 < kept < 0.35  # ~170 entries drawn with p = 0.25


def test_childtuning_f_mask_is_bernoulli_p_and_unbiased():
    """Over many entries the kept fraction is p (to sampling error) and the mean of the masked
    gradient is the gradient: kept entries are divided by the same rounded p they were kept with."""
    from runner.tricks.childtuning_f import BITS, bernoulli_mask_, keep_threshold

    torch.manual_seed(0)
    p = 0.3
    g = [torch.ones(400_000), torch.ones(3, 7)]
    bernoulli_mask_(g, p)
    t = keep_threshold(p)
    scale = 2**BITS / t
    vals = torch.cat([x.flatten() for x in g])
    assert set(vals.unique().tolist()) == {0.0, torch.tensor(scale).item()}  # float32
    kept = (vals > 0).float().mean().item()
    assert abs(kept - t / 2**BITS) < 4 * (p * (1 - p) / len(vals)) ** 0.5  # 4 sigma
    assert abs(t / 2**BITS - p) <= 2 ** -(BITS + 1)
    assert abs(vals.double().mean().item() - 1.0) < 0.01  # unbiased: E[m / p'] = 1


def _train_split(n=40, seed=2):
    b = tiny_batch(seed, n)
    return {"x": b["x"], "y": b["y"]}


@pytest.mark.parametrize("n_batches", [3, 7, None])  # 7 > 5 batches per epoch: cycles into
def test_childtuning_d_fisher_and_exact_top_p_mask(n_batches):  # epoch 1; None: one epoch
    model = tiny_model(dropout=0.3)
    batcher = IndexBatcher(_train_split(), batch_size=8, seed=0)
    trick = ChildTuningD(p=0.3, fisher_batches=n_batches)
    st = make_state(model, [trick], batcher=batcher)
    assert model.training

    # direct Fisher: mean squared batch gradient of the mean NLL, in train mode (dropout on, as
    # the reference code), over the whole train split by default; same dropout draws (seeded)
    n = n_batches or batcher.steps_per_epoch
    assert n == (n_batches or 5)
    ref = tiny_model(dropout=0.3).train()
    fisher = [torch.zeros_like(p) for p in ref.parameters()]
    order = [b for e in range(2) for b in batcher.epoch(e)][:n]
    torch.manual_seed(11)
    for b in order:
        for f, g in zip(fisher, pgrad(ce(ref, b["x"], b["y"]), ref)):
            f += g.pow(2)
    fisher = [f / n for f in fisher]
    torch.manual_seed(11)
    own = fisher_diag(st, n_batches)
    assert_close_list(own, fisher)
    torch.manual_seed(11)
    assert not all(
        torch.allclose(a, b) for a, b in zip(fisher_diag(st, n_batches, train=False), fisher)
    )  # dropout mattered

    flat = torch.cat([f.flatten() for f in fisher_diag(st, n_batches, train=True)])
    keep = torch.cat([m.flatten() for m in trick.mask])
    assert keep.sum().item() == round(0.3 * flat.numel())

    # on_grads keeps exactly the masked entries, unscaled
    batch = tiny_batch()
    run(st, batch)
    before = grads(model)
    trick.on_grads(st)
    assert_close_list(grads(model), [g * m for g, m in zip(before, trick.mask)])

    # the mask is trick state: it round-trips through state_dict
    other = ChildTuningD(p=0.3, fisher_batches=1)
    make_state(tiny_model(seed=9), [other], batcher=batcher)
    other.load_state_dict(trick.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.mask, trick.mask))


def test_childtuning_d_mask_is_the_top_p_of_its_fisher_in_eval_mode():
    model = tiny_model(dropout=0.3)
    batcher = IndexBatcher(_train_split(), batch_size=8, seed=0)
    trick = ChildTuningD(p=0.3, fisher_mode="eval")
    st = make_state(model, [trick], batcher=batcher)
    flat = torch.cat([f.flatten() for f in fisher_diag(st, None, train=False)])
    keep = torch.cat([m.flatten() for m in trick.mask])
    assert keep.sum().item() == round(0.3 * flat.numel())
    assert flat[keep].min() >= flat[~keep].max()


def test_childtuning_d_scope_encoder_masks_neither_embeddings_nor_the_head():
    from runner.models.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(
        num_classes=C, vocab_size=20, max_len=6, width=8, depth=1, heads=2, dropout=0.0
    )
    g = torch.Generator().manual_seed(1)
    split = {
        "x": torch.randint(1, 20, (16, 6), generator=g),
        "mask": torch.ones(16, 6, dtype=torch.long),
        "y": torch.randint(0, C, (16,), generator=g),
    }
    trick = ChildTuningD(p=0.3, scope="encoder", fisher_mode="eval")
    st = make_state(model, [trick], batcher=IndexBatcher(split, batch_size=8, seed=0))
    names = {id(p): n for n, p in model.named_parameters()}
    scoped = [names[id(p)] for p in trick.params]
    assert scoped and all(n.startswith(("blocks.", "ln.")) for n in scoped)
    assert not any(n.startswith(("tok.", "pos.", "head.")) for n in scoped)
    # the Fisher, the top-p count over the scope only
    fisher = fisher_diag(st, None, trick.params, train=False)
    assert sum(int(m.sum()) for m in trick.mask) == round(0.3 * sum(f.numel() for f in fisher))
    F.cross_entropy(model(split), split["y"]).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    trick.on_grads(st)
    for n, p in model.named_parameters():
        if n.startswith(("tok.", "pos.", "head.")):
            assert torch.equal(p.grad, before[n]), n  # out of scope: untouched
    with pytest.raises(Exception, match="scope"):
        ChildTuningD(scope="head")


def test_top_fraction_mask_counts_exactly_with_ties():
    scores = [torch.ones(10), torch.ones(3, 5)]  # all tied
    for p in (0.1, 0.3, 0.5, 1.0):
        m = top_fraction_mask(scores, p)
        assert sum(int(x.sum()) for x in m) == round(p * 25)


# -- label smoothing, input noise ----------------------------------------------------------


def test_label_smoothing_equals_torch_label_smoothing():
    model, batch = tiny_model(), tiny_batch()
    out = run(make_state(model, [LabelSmoothing(eps=0.2)]), batch)
    ref = tiny_model()
    expected = F.cross_entropy(ref({"x": batch["x"]}), batch["y"], label_smoothing=0.2)
    torch.testing.assert_close(out.loss, expected)
    assert_close_list(grads(model), pgrad(expected, ref))


def test_noise_adds_sigma_gaussian_to_the_embedding():
    model, batch = tiny_model(), tiny_batch()
    torch.manual_seed(4)
    out = run(make_state(model, [Noise(sigma=0.5)]), batch)
    torch.manual_seed(4)
    n = 0.5 * torch.randn(batch["x"].shape)
    torch.testing.assert_close(out.batch["delta"], n)
    torch.testing.assert_close(out.loss, ce(tiny_model(), batch["x"] + n, batch["y"]))
    assert "delta" not in batch  # the caller's batch is not modified


def test_noise_sigma0_draws_nothing():
    model, batch = tiny_model(), tiny_batch()
    rng = torch.get_rng_state()
    out = run(make_state(model, [Noise(sigma=0.0)]), batch)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(out.loss, ce(tiny_model(), batch["x"], batch["y"]))


# -- spectral norm regularisation ----------------------------------------------------------


def test_spectral_one_power_step_per_step_and_penalty_gradient():
    model, batch = tiny_model(), tiny_batch()
    trick = Spectral(lam=0.2)
    st = make_state(model, [trick])
    Ws = weight_matrices(model)
    assert len(Ws) == 3
    u0 = [u.clone() for u in trick.u]
    out = run(st, batch)

    us, vs = [], []
    for W, u in zip(Ws, u0):
        W = W.detach().float()
        v = F.normalize(W.t() @ u, dim=0)
        us.append(F.normalize(W @ v, dim=0))
        vs.append(v)
    assert_close_list(trick.u, us)
    assert_close_list(trick.v, vs)

    ref = tiny_model()
    rW = weight_matrices(ref)
    sig = [u @ (W.float() @ v) for W, u, v in zip(rW, us, vs)]
    total = ce(ref, batch["x"], batch["y"]) + 0.2 / 2 * sum(s.pow(2) for s in sig)
    torch.testing.assert_close(out.loss, total.to(out.loss.dtype))
    assert_close_list(grads(model), pgrad(total, ref))

    # a second micro-batch of the same step does not iterate again
    run(st, batch)
    assert_close_list(trick.u, us)


def test_spectral_power_iteration_converges_to_sigma_max():
    model = tiny_model()
    trick = Spectral(lam=0.0)
    st = make_state(model, [trick])
    loss_fn, _ = engine.build_chains(st)
    for step in range(200):
        st.step = step
        out = loss_fn(tiny_batch())
    true = max(
        torch.linalg.matrix_norm(W.detach().float(), 2).item() for W in weight_matrices(model)
    )
    assert out.parts["spectral_max"].item() == pytest.approx(true, rel=1e-4)


def test_spectral_covers_conv_kernels():
    torch.manual_seed(0)
    cnn = CNN1d(in_dim=40, num_classes=10, channels=4)
    assert len(weight_matrices(cnn)) == 4  # 3 convolutions + the classifier


@pytest.mark.parametrize(
    "make",
    [lambda: FGM(eps=0.5), lambda: PGD(eps=0.5, alpha=0.3, K=3), lambda: VAT(eps=0.5)],
    ids=["fgm", "pgd", "vat"],
)
def test_perturbations_do_not_depend_on_the_fp16_loss_scale(make):
    """Under a GradScaler the gradients the perturbations come from are scaled (so they do not
    underflow in fp16); the perturbation itself must not change."""
    batch = tiny_batch()
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        st = make_state(tiny_model(), [make()])
        st.scaler = scaler
        seen = record_deltas(st)
        torch.manual_seed(0)
        run(st, batch)
        runs.append(seen)
    assert len(runs[0]) == len(runs[1]) > 0
    assert_close_list(runs[0], runs[1])
