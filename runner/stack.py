"""Stacked runs: K runs of one code path trained as one model whose parameters carry a leading
member dimension [K, ...] (see docs/stack.md).

The pieces here are what a stacked run swaps into the one training loop (runner.engine), each
doing per member what its solo counterpart does for one run:

- `StackedLinear`, `StackedConv1d`, `StackedDropout`: layers over inputs [K, B, ...]; a linear is
  one batched product (`baddbmm`), a convolution one grouped convolution (groups = K), a dropout
  each member's own draws from its own generator (the draws its solo run would make).
- `stack_models(models, generators)`: K solo models (each built under its own seed, so its
  initialisation is its solo run's) -> one model of the same class running on [K, B, ...]
  batches; `member_state_dict(model, k)` gives member k's weights under the solo names.
- `StackBatcher`: each member's own epoch order (IndexBatcher's, from its own seed), one gather
  per epoch, every batch a view [K, B, ...].
- `StackedLoss`: the run's loss per member: a [K] vector of each member's mean; the backward
  takes its sum (Σₖ meanₖ, never a mean over members), so each member's gradient is its own.

A model stacks when it says so (`Model.stackable`) and every module holding parameters or
drawing random numbers is one of the layers above; anything else is refused (`NotStackable`)
and the jobs run solo.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.base import take
from runner.data.batching import IndexBatcher

#: `tricks train -m ... --stack K` (runner.cli): with size > 1 the sweep's jobs are only listed
#: by runner.main (config resolved, run dir) and trained afterwards in stacks by runner.stack_run
STACK: dict = {"size": 1, "jobs": []}


class NotStackable(Exception):
    """Why a set of runs cannot share a stack (the caller runs them solo)."""


def _stacked(tensors: list) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach() for t in tensors]))


class StackedLinear(nn.Module):
    """K linear layers: weight [K, out, in], bias [K, out]; x [K, ..., in] -> [K, ..., out]."""

    def __init__(self, members: list[nn.Linear]):
        super().__init__()
        self.weight = _stacked([m.weight for m in members])
        has_bias = members[0].bias is not None
        self.bias = _stacked([m.bias for m in members]) if has_bias else None

    def forward(self, x):
        k, shape = x.shape[0], x.shape
        x3 = x.reshape(k, -1, shape[-1])
        wt = self.weight.transpose(1, 2)
        y = torch.baddbmm(self.bias.unsqueeze(1), x3, wt) if self.bias is not None else x3 @ wt
        return y.view(*shape[:-1], y.shape[-1])


class StackedConv1d(nn.Module):
    """K Conv1d layers as one grouped convolution: x [K, B, C_in, L] -> [K, B, C_out, L']."""

    def __init__(self, members: list[nn.Conv1d]):
        super().__init__()
        m = members[0]
        if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise NotStackable("Conv1d with groups, string padding or a padding mode")
        self.weight = _stacked([c.weight for c in members])
        has_bias = m.bias is not None
        self.bias = _stacked([c.bias for c in members]) if has_bias else None
        self.stride, self.padding, self.dilation = m.stride, m.padding, m.dilation

    def forward(self, x):
        k, b, c, n = x.shape
        w = self.weight
        xin = x.transpose(0, 1).reshape(b, k * c, n)
        bias = self.bias.reshape(-1) if self.bias is not None else None
        y = F.conv1d(
            xin, w.reshape(-1, *w.shape[2:]), bias, self.stride, self.padding, self.dilation, k
        )
        return y.view(b, k, w.shape[1], -1).transpose(0, 1)


class StackedDropout(nn.modules.dropout._DropoutNd):
    """Dropout with each member's draws from its own generator: on CPU the numbers its solo run
    draws (torch's CPU dropout is `empty_like(x).bernoulli_(1 - p)`, scaled by 1 / (1 - p)). A
    dropout module to whoever asks (R-Drop's check)."""

    def __init__(self, p: float, generators: list):
        super().__init__(p)
        self.generators = generators

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        noise = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # each [k] contiguous
        for k, g in enumerate(self.generators):
            noise[k].bernoulli_(1 - self.p, generator=g)
        noise.div_(1 - self.p)
        return x * noise


def _stacked_child(children: list, generators: list) -> nn.Module | None:
    """The stacked replacement of K corresponding modules; None to keep them as they are (a
    container, or a layer with neither parameters nor random draws); NotStackable otherwise."""
    c = children[0]
    if type(c) is nn.Linear:
        return StackedLinear(children)
    if type(c) is nn.Conv1d:
        return StackedConv1d(children)
    if type(c) is nn.Dropout:
        return StackedDropout(c.p, generators)
    if isinstance(c, nn.modules.dropout._DropoutNd) or any(True for _ in c.parameters(False)):
        raise NotStackable(f"{type(c).__name__} has no stacked form")
    return None


def stack_models(models: list[nn.Module], generators: list) -> nn.Module:
    """One model of the members' class whose layers carry the member dimension; its `forward`
    takes batches [K, B, ...] (the model's own code, reading `self._lead` = 2 batch dims)."""
    base = models[0]
    if not getattr(type(base), "stackable", False):
        raise NotStackable(f"model {type(base).__name__} does not declare itself stackable")
    stacked = copy.deepcopy(base)
    names = [n for n, _ in stacked.named_modules() if n]
    for name in names:  # parents before children: a replaced subtree is skipped below
        parent_name, _, child = name.rpartition(".")
        try:
            parent = stacked.get_submodule(parent_name) if parent_name else stacked
        except AttributeError:
            continue
        if not isinstance(getattr(parent, child, None), nn.Module):
            continue
        new = _stacked_child([m.get_submodule(name) for m in models], generators)
        if new is not None:
            setattr(parent, child, new)
    own = [n for n, p in stacked.named_parameters() if p.shape[:1] != (len(models),)]
    if own:
        raise NotStackable(f"parameter {own[0]} has no member dimension")
    stacked._lead = 2
    stacked.members = len(models)
    return stacked


def member_state_dict(model: nn.Module, k: int) -> dict:
    """Member k's weights under its solo model's names and shapes (loadable by a solo run)."""
    return {n: v[k].clone() for n, v in model.state_dict().items()}


class StackBatcher:
    """The members' batches as one [K, B, ...] view per step: member k's rows are those its solo
    run's IndexBatcher (seed k) yields, in the same order. The interface of IndexBatcher that
    the engine uses (`epoch`, `steps_per_epoch`, `n`)."""

    def __init__(self, split: dict, batch_size: int, seeds: list[int], group: int = 1):
        self.members = [IndexBatcher(split, batch_size, seed=s, group=group) for s in seeds]
        self.split, self.batch_size = split, batch_size
        self.n = self.members[0].n
        self.steps_per_epoch = self.members[0].steps_per_epoch

    def epoch(self, epoch: int, start: int = 0):
        used = self.steps_per_epoch * self.batch_size
        dev = self.split["y"].device
        idx = torch.stack([b.host_order(epoch)[:used] for b in self.members]).to(dev)
        shuffled = take(self.split, idx)  # one gather per epoch: [K, used, ...]
        for i in range(start, self.steps_per_epoch):
            lo = i * self.batch_size
            yield {k: v[:, lo : lo + self.batch_size] for k, v in shuffled.items()}


class StackedLoss:
    """A single-label loss (runner.losses) per member: `__call__` -> [K] means, `sum` -> [K]
    sums (evaluation, where y [B] is every member's), `counts` -> [K, c] (logits of several
    micro-batches concatenated on dim 0 fold back onto their member)."""

    def __init__(self, base, k: int):
        if base.multilabel:
            raise NotStackable(f"loss={base.name} (only single-label losses stack)")
        self.base, self.k = base, k
        self.figures, self.select, self.name = base.figures, base.select, base.name
        self.multilabel = False

    def per_sample(self, logits, y):
        y = y.expand(logits.shape[:-1]) if y.dim() < logits.dim() - 1 else y
        return self.base.per_sample(logits.flatten(0, -2), y.reshape(-1)).view(logits.shape[:-1])

    def __call__(self, logits, y, labeled=None):
        if labeled is not None:
            raise NotStackable("semi-supervised batches")
        return self.per_sample(logits, y).mean(-1)

    def sum(self, logits, y):
        return self.per_sample(logits, y).sum(-1)

    def predict(self, logits):
        return self.base.predict(logits)

    def counts(self, logits, y, labeled=None):
        y = y.expand(logits.shape[:-1]) if y.dim() < logits.dim() - 1 else y
        hit = self.predict(logits) == y
        rows = torch.full(hit.shape[:-1], hit.shape[-1], dtype=torch.long, device=hit.device)
        c = torch.stack([hit.sum(-1), rows], -1)  # [n*K, 2]
        return c.view(-1, self.k, 2).sum(0)

    def metrics(self, c) -> dict:
        return self.base.metrics(c)

    def divergence(self, p_logits, q_logits, symmetric: bool = False):
        return self.base.divergence(p_logits, q_logits, symmetric)
