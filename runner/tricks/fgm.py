"""FGM adversarial training: one adversarial step on the embedding.

After the clean pass, with g = ∂loss/∂embedding:

    r = eps · g / ‖g‖        (‖·‖ over the whole perturbed tensor; per-sample with norm=sample)

then one forward and backward at embedding + r. Two choices, each with the blog's form and the
common one:

- ``mode``: what the step's gradients are.
  ``both`` (default): clean + adversarial, ∇L(x) + w·∇L(x + r) (the common PyTorch form, as in
  most FGM snippets); ``adv`` (**the blog's**, the Keras implementation of kexue.fm/archives/7234,
  which replaces the training loss by the adversarial one): w·∇L(x + r) alone. With ``adv`` the
  clean pass only differentiates down to the embedding (``torch.autograd.grad``, no parameter
  gradient), so under gradient accumulation the earlier micro-batches' gradients are kept and only
  this micro-batch's clean gradient is left out. w = ``adv_weight`` (default 1; 0 with mode=both
  is a bit-exact no-op that skips the extra pass).
- ``target``: what is perturbed.
  ``output`` (default): each position's embedding output, passed to the model as an additive
  ``delta`` (for mnist1d: the input itself), so nothing is modified and nothing needs restoring;
  ``table`` (**the blog's**: it perturbs the embedding *matrix*): G = ∂loss/∂E, the gradient of
  the embedding matrix E (nonzero exactly on the rows of the tokens in the batch), r = eps·G/‖G‖_F
  normalised over the whole matrix, E <- E + r for the forward+backward, then the touched rows are
  copied back from a saved copy (bit-exact, no subtraction). A token occurring twice in the batch
  gets one shared perturbation (the sum of its positions' gradients) instead of one per
  position. Needs a model with ``embedding_table()`` (transformer, minilm, hf).

Miyato, Dai & Goodfellow, "Adversarial Training Methods for Semi-Supervised Text
Classification", ICLR 2017 (FGM on embeddings); Goodfellow et al. 2015 (FGSM).
Su Jianlin, "对抗训练浅谈：意义、方法和思考（附Keras实现）", https://kexue.fm/archives/7234 .

Defaults: eps = 1.0, norm = global (the blog's whole-tensor norm) | sample, mode = both,
target = output, adv_weight = 1. The blog's form: ``reg.fgm.mode=adv reg.fgm.target=table``.

Composition: order 70 (adversarial backward). g is the gradient of the loss the loss chain
returned (R-Drop's KL and flooding included); the adversarial pass runs on ``Out.batch`` (the
doubled batch under R-Drop, the noisy one under input noise) with the plain cross-entropy. Under
gradient accumulation g is scaled by 1/accum_steps (and the fp16 loss scale): the direction is
unaffected. ``mode=adv`` replaces the clean backward, so it cannot share the backward chain with
another backward trick (PGD). Cost: one extra forward+backward (with ``adv`` the clean backward
stops at the embedding). Logged: ``train/adv_loss``.
"""

from __future__ import annotations

import torch

from runner.errors import ConfigError, check, positive
from runner.hooks import overrides
from runner.tricks import Trick

NORMS = ("global", "sample")
MODES = ("both", "adv")
TARGETS = ("output", "table")
TABLE_MODELS = "transformer, minilm, hf"


def l2_normalize(
    g: torch.Tensor, norm: str = "global", tiny: float = 1e-12, lead: int = 0
) -> torch.Tensor:
    """g / ‖g‖ over the whole tensor (global) or over each sample (dim 0). `lead` = 1 (a stacked
    run's [K, B, ...]): over each member's slice, or each member's each sample."""
    g = g.float()
    if lead:
        n = g.flatten(lead + (norm == "sample")).norm(dim=-1).clamp_min(tiny)
        return g / n.view(*n.shape, *([1] * (g.dim() - n.dim())))
    if norm == "global":
        return g / g.norm().clamp_min(tiny)
    n = g.flatten(1).norm(dim=1).clamp_min(tiny)
    return g / n.view(-1, *([1] * (g.dim() - 1)))


def member_view(v, dims: int):
    """A per-member [K] strength as [K, 1, ...] over a tensor of `dims` dims (a number as is)."""
    return v.view(-1, *([1] * (dims - 1))) if torch.is_tensor(v) else v


def project(r: torch.Tensor, eps, norm: str = "global", lead: int = 0) -> torch.Tensor:
    """Project r onto the L2 ball of radius eps (whole tensor or per sample). `lead` = 1 (a
    stacked run): each member's slice (or its each sample), eps a number or [K]."""
    if lead:
        n = r.flatten(lead + (norm == "sample")).norm(dim=-1)
        f = torch.clamp(member_view(eps, n.dim()) / n.clamp_min(1e-12), max=1.0)
        return r * f.view(*f.shape, *([1] * (r.dim() - f.dim())))
    if norm == "global":
        n = r.norm()
        return r * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    n = r.flatten(1).norm(dim=1)
    f = torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return r * f.view(-1, *([1] * (r.dim() - 1)))


def check_norm(norm: str, key: str) -> None:
    check(norm in NORMS, key, f"got {norm!r}", ", ".join(NORMS))


def check_forms(key: str, mode: str, target: str, norm: str, adv_weight) -> None:
    """The options shared by FGM and PGD (`key` is e.g. reg.fgm)."""
    check_norm(norm, f"{key}.norm")
    check(mode in MODES, f"{key}.mode", f"got {mode!r}", ", ".join(MODES))
    check(target in TARGETS, f"{key}.target", f"got {target!r}", ", ".join(TARGETS))
    check(
        not (target == "table" and norm != "global"),
        f"{key}.norm",
        "target=table normalises over the whole embedding matrix",
        "global",
    )
    positive(adv_weight, f"{key}.adv_weight", allow_zero=mode == "both")


def check_setup(trick, state, key: str) -> None:
    """Build-time checks that need the model and the other tricks."""
    if trick.target == "table" and table_of(state) is None:
        raise ConfigError(
            f"{key}.target",
            f"table: {type(state.raw_model).__name__} has no embedding table",
            f"output; table with model={TABLE_MODELS}",
        )
    if trick.mode == "adv":
        other = [t for t in state.tricks if t is not trick and overrides(t, "backward")]
        if other:
            raise ConfigError(
                f"{key}.mode",
                f"adv replaces the clean backward, which {other[0].name} wraps too",
                "both; or one adversarial trick",
            )


def table_of(state):
    fn = getattr(state.raw_model, "embedding_table", None)
    return fn() if fn is not None else None


def for_direction(state, loss: torch.Tensor) -> torch.Tensor:
    """The loss to differentiate when only the gradient's direction matters: scaled by the fp16
    GradScaler when there is one, so small gradients do not underflow (no host sync)."""
    return state.scaler.scale(loss) if state.scaler is not None else loss


def embed_grad(out) -> torch.Tensor | None:
    """∂loss/∂embedding after the clean backward (None if the loss does not reach it)."""
    return None if out.embed is None else out.embed.grad


def clean_grad(state, out, batch, next, mode: str) -> torch.Tensor | None:
    """Run the clean backward as `mode` asks and return ∂loss/∂embedding. ``both``: the inner
    backward chain (parameter gradients accumulate); ``adv``: the gradient w.r.t. the embedding
    only (no parameter gradient, no DDP hook fires)."""
    if mode == "both" or out.embed is None:
        next(out, batch)
        return embed_grad(out)
    loss = out.loss if out.loss.dim() == 0 else out.loss.sum()  # a stack's [K]: Σₖ, each its own
    (g,) = torch.autograd.grad(for_direction(state, loss), out.embed, allow_unused=True)
    if g is None:  # the loss does not reach the embedding: keep the clean step
        next(out, batch)
    return g


def adv_backward(state, loss: torch.Tensor, weight: float) -> None:
    state.backward(loss if weight == 1.0 else weight * loss)
    state.log_scalar("adv_loss", loss)


class TableShift:
    """Perturb the rows of the embedding matrix that `ids` look up, and put them back bit-exactly.

    Sync-free (no torch.unique): rows are written per position with index_put_, where duplicate
    ids write the same value."""

    def __init__(self, table: torch.nn.Parameter, ids: torch.Tensor):
        self.table, self.ids = table, ids.reshape(-1)
        self.saved = table.detach()[self.ids]  # a copy (advanced indexing)

    def matrix_grad(self, g_out: torch.Tensor) -> torch.Tensor:
        """∂loss/∂E from ∂loss/∂(E[ids]): the lookup's backward (rows of absent tokens are 0)."""
        flat = g_out.reshape(-1, g_out.shape[-1]).float()
        G = torch.zeros(self.table.shape, dtype=torch.float32, device=flat.device)
        return G.index_put_((self.ids,), flat, accumulate=True)  # deterministic on CUDA too

    @torch.no_grad()
    def apply(self, r: torch.Tensor) -> None:
        """E[rows] = saved + r[rows] (from the saved rows: repeated PGD steps do not compound)."""
        new = (self.saved.float() + r[self.ids]).to(self.table.dtype)
        self.table.index_put_((self.ids,), new)

    @torch.no_grad()
    def restore(self) -> None:
        self.table.index_put_((self.ids,), self.saved)


class Adversarial(Trick):
    """FGM's and PGD's hook frame: adv_weight 0 is the no-op (no extra pass); otherwise the clean
    backward as ``mode`` asks, then ``attack`` from g = ∂loss/∂embedding on the batch the loss
    chain ran (``Out.batch``). The trick facts stay on each trick's own class."""

    def setup(self, state) -> None:
        check_setup(self, state, f"reg.{self.name}")

    def backward(self, state, out, batch, next) -> None:
        if self.adv_weight == 0.0:  # the no-op: no extra pass
            return next(out, batch)
        g = clean_grad(state, out, batch, next, self.mode)
        if g is None:
            return
        self.attack(state, out, out.batch if out.batch is not None else batch, g)

    def attack(self, state, out, b, g) -> None:
        raise NotImplementedError


class FGM(Adversarial):
    order = 70
    needs_embed_grad = True
    figures = ("train/adv_loss",)
    noop = {"adv_weight": 0.0}
    noop_exact = True
    passes = "2"
    stackable = True  # each member's normalisation and eps (table models never stack)
    stack_keys = ("eps",)

    def __init__(
        self,
        eps: float = 1.0,
        norm: str = "global",
        mode: str = "both",
        target: str = "output",
        adv_weight: float = 1.0,
        order: int | None = None,
    ):
        super().__init__(order)
        positive(eps, "reg.fgm.eps")
        check_forms("reg.fgm", mode, target, norm, adv_weight)
        self.eps, self.norm, self.mode, self.target = float(eps), norm, mode, target
        self.adv_weight = float(adv_weight)

    def attack(self, state, out, b, g) -> None:
        if self.target == "output":
            eps = member_view(self.eps, g.dim())  # a stack's [K] eps over [K, B, ...]
            r = (eps * l2_normalize(g, self.norm, lead=state.batch_dim)).to(out.embed.dtype)
            adv_backward(state, state.forward(b, delta=r).loss, self.adv_weight)
            return
        shift = TableShift(table_of(state), b["x"])
        shift.apply(self.eps * l2_normalize(shift.matrix_grad(g)))
        try:
            adv_backward(state, state.forward(b).loss, self.adv_weight)
        finally:
            shift.restore()
