"""ChildTuning-D: update only the "child network" of parameters most informative for the task.

Before training, estimate the diagonal Fisher information of every parameter entry in scope over
N batches,

    F = (1/N) Σ_batches (∂ loss_batch/∂θ)²       (loss = mean negative log-likelihood)

keep the top-p fraction of entries (exactly round(p · #entries), over all parameters in scope
together) as a fixed mask, and multiply their gradients by it at every step (no rescaling, as in
the paper's ChildTuning-D; the -F variant rescales by 1/p). Parameters out of scope are trained
normally.

Xu et al., "Raise a Child in Large Language Model: Towards Effective and Generalizable
Fine-tuning", EMNLP 2021. Su Jianlin, "ChildTuning：试试把Dropout加到梯度上去？",
https://kexue.fm/archives/8764 .

What the reference code (github.com/alibaba/AliceMind, ChildTuning, `calculate_fisher`) does:
the model in train mode (dropout on), one pass over the whole training set (N = its number of
batches), each batch's loss backpropagated and each parameter's gradient clipped to norm
max_grad_norm before squaring, only parameters whose name contains 'layer' (BERT's encoder
layers: not the embeddings, their LayerNorm, the pooler nor the classifier), and the mask
F >= the (1 - p) percentile of those entries. Here: the same, except that gradients are not
clipped per tensor, and the mask keeps exactly round(p · n) entries (ties broken by topk).

Defaults: p = 0.3; fisher_batches = null (the whole train split, one epoch; a number caps it,
cycling epochs past one); fisher_mode = train (the reference's; eval: no dropout, draws no random
numbers); scope = all (every parameter) | encoder (`Model.encoder_parameters()`: all but the
embedding tables and the task head; for hf/minilm the reference's 'layer' rule).

In train mode the Fisher pass draws dropout masks, so the training stream's random numbers differ
from a run without the trick. The mask is trick state: saved in checkpoints and restored on
resume. Under DDP each batch's gradient is averaged over the ranks first (the global batch's
gradient), so every rank computes the same Fisher and keeps the same mask. Composition: order 80
(gradient masking) in ``on_grads``, before clipping. Logged: nothing per step (the mask is fixed).
"""

from __future__ import annotations

import torch

from runner.dist import mean_grads
from runner.errors import ConfigError, check, in_range, positive
from runner.tricks import Trick

SCOPES = ("all", "encoder")
MODES = ("train", "eval")


def fisher_diag(
    state, batches: int | None = None, params: list | None = None, train: bool = True
) -> list:
    """Mean over `batches` training batches (None: one epoch) of the squared gradient of the
    batch loss, for `params` (default: all trainable parameters)."""
    params = state.params if params is None else params
    batches = batches or state.batcher.steps_per_epoch
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    model = state.model
    was_training = model.training
    model.train(train)
    try:
        done, epoch = 0, 0
        while done < batches:
            for batch in state.batcher.epoch(epoch):
                grads = torch.autograd.grad(state.forward(batch).loss, params, allow_unused=True)
                if state.world_size > 1:  # DDP: the global batch's gradient, one mask on all ranks
                    grads = mean_grads(list(grads), state.world_size)
                for f, g in zip(fisher, grads):
                    if g is not None:
                        f += g.float().pow(2)
                done += 1
                if done == batches:
                    break
            epoch += 1
    finally:
        model.train(was_training)
    return [f / batches for f in fisher]


def top_fraction_mask(scores: list, p: float) -> list:
    """Boolean masks keeping exactly round(p · total) entries with the highest scores."""
    flat = torch.cat([s.flatten() for s in scores])
    k = max(1, int(round(p * flat.numel())))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    out, i = [], 0
    for s in scores:
        out.append(keep[i : i + s.numel()].view_as(s))
        i += s.numel()
    return out


class ChildTuningD(Trick):
    order = 80
    figures = ()
    noop = {"p": 1.0, "fisher_mode": "eval"}  # every entry kept; an eval-mode Fisher draws nothing
    noop_exact = True
    passes = "1 (+ Fisher pass before training)"
    stackable = False  # runs using it train solo (runner.stack_run)

    def __init__(
        self,
        p: float = 0.3,
        fisher_batches: int | None = None,
        scope: str = "all",
        fisher_mode: str = "train",
        order: int | None = None,
    ):
        super().__init__(order)
        in_range(p, "reg.childtuning_d.p", 0.0, 1.0, lo_open=True)
        if fisher_batches is not None:
            positive(fisher_batches, "reg.childtuning_d.fisher_batches", integer=True)
        check(scope in SCOPES, "reg.childtuning_d.scope", f"got {scope!r}", ", ".join(SCOPES))
        check(
            fisher_mode in MODES,
            "reg.childtuning_d.fisher_mode",
            f"got {fisher_mode!r}",
            ", ".join(MODES),
        )
        self.p, self.fisher_batches, self.scope = float(p), fisher_batches, scope
        self.train_mode = fisher_mode == "train"
        self.mask: list | None = None
        self.params: list = []

    def _scope(self, state) -> list:
        if self.scope == "all":
            return list(state.params)
        fn = getattr(state.raw_model, "encoder_parameters", None)
        params = fn() if fn is not None else None
        if not params:
            raise ConfigError(
                f"reg.{self.name}.scope",
                f"encoder: {type(state.raw_model).__name__} names no encoder parameters",
                "all; encoder with the models of runner/models/",
            )
        trainable = {id(p) for p in state.params}
        return [p for p in params if id(p) in trainable]

    def setup(self, state) -> None:
        self.params = self._scope(state)
        fisher = fisher_diag(state, self.fisher_batches, self.params, train=self.train_mode)
        self.mask = top_fraction_mask(fisher, self.p)

    @torch.no_grad()
    def on_grads(self, state) -> None:
        for p, m in zip(self.params, self.mask):
            if p.grad is not None:
                p.grad.mul_(m)

    def state_dict(self) -> dict:
        return {"mask": [m.cpu() for m in self.mask] if self.mask is not None else None}

    def load_state_dict(self, state: dict) -> None:
        mask = state.get("mask")
        if mask is not None:
            dev = self.mask[0].device if self.mask else "cpu"
            self.mask = [m.to(dev) for m in mask]
