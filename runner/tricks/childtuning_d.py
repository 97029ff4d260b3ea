"""ChildTuning-D: update only the "child network" of parameters most informative for the task.

Before training, estimate the diagonal Fisher information of every parameter entry over N batches,

    F = (1/N) Σ_batches (∂ loss_batch/∂θ)²       (loss = mean negative log-likelihood)

keep the top-p fraction of entries (exactly round(p · #entries), over all parameters together) as a
fixed mask, and multiply the gradients by it at every step (no rescaling, as in the paper's
ChildTuning-D; the -F variant rescales by 1/p).

Xu et al., "Raise a Child in Large Language Model: Towards Effective and Generalizable
Fine-tuning", EMNLP 2021 (the Fisher of batch gradients follows their reference code).
Su Jianlin, "ChildTuning：试试把Dropout加到梯度上去？", https://kexue.fm/archives/8764 .

Defaults: p = 0.3, batches = 16 (N; training batches in the run's own order, cycling epochs).

The Fisher is computed in eval mode (no dropout: deterministic, and it draws no random numbers,
so the training stream is the same as without the trick). The mask is trick state: saved in
checkpoints and restored on resume. Under DDP each batch's gradient is averaged over the ranks
first (the global batch's gradient), so every rank computes the same Fisher and keeps the same
mask. Composition: order 80 (gradient masking) in ``on_grads``, before clipping. Logged: nothing
per step (the mask is fixed; its density is p).
"""

from __future__ import annotations

import torch

from runner.errors import in_range, positive
from runner.tricks import Trick


def fisher_diag(state, batches: int) -> list:
    """Mean over `batches` training batches of the squared gradient of the batch loss."""
    params = state.params
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    model = state.model
    was_training = model.training
    model.eval()
    try:
        done, epoch = 0, 0
        while done < batches:
            for batch in state.batcher.epoch(epoch):
                grads = torch.autograd.grad(state.forward(batch).loss, params, allow_unused=True)
                if state.world_size > 1:  # DDP: the global batch's gradient, one mask on all ranks
                    from runner.dist import mean_grads

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
        out.append(keep[i:i + s.numel()].view_as(s))
        i += s.numel()
    return out


class ChildTuningD(Trick):
    order = 80
    figures = ()
    noop = {"p": 1.0}
    noop_exact = True
    passes = "1 (+ Fisher pass before training)"

    def __init__(self, p: float = 0.3, batches: int = 16, order: int | None = None):
        super().__init__(order)
        in_range(p, "reg.childtuning_d.p", 0.0, 1.0, lo_open=True)
        positive(batches, "reg.childtuning_d.batches", integer=True)
        self.p, self.batches = float(p), int(batches)
        self.mask: list | None = None

    def setup(self, state) -> None:
        self.mask = top_fraction_mask(fisher_diag(state, self.batches), self.p)

    @torch.no_grad()
    def on_grads(self, state) -> None:
        for p, m in zip(state.params, self.mask):
            if p.grad is not None:
                p.grad.mul_(m)

    def state_dict(self) -> dict:
        return {"mask": [m.cpu() for m in self.mask] if self.mask is not None else None}

    def load_state_dict(self, state: dict) -> None:
        mask = state.get("mask")
        if mask is not None:
            dev = self.mask[0].device if self.mask else "cpu"
            self.mask = [m.to(dev) for m in mask]
