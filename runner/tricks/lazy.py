"""LazyOptimizer: embedding rows whose gradient is zero this step are not updated.

For every embedding table (the weight of each ``nn.Embedding`` in the model: token, position and
token-type tables, plus the model's ``embedding_table()``), a row whose gradient is exactly zero in
this optimizer step (its token is in none of the step's micro-batches) keeps its value **and its
optimizer state rows** (Adam's m and v, Lion's / Tiger's momentum, SGD's momentum buffer: every
state tensor shaped like the table). Every other row, and every other parameter, gets the
wrapped optimizer's update unchanged:

    θ_i <- θ_i                     if ∇_i = 0 for row i of an embedding table
    θ_i <- optimizer(θ_i, ∇_i)     otherwise

Why: with momentum (Adam, Lion, Tiger, SGD with momentum) or decoupled weight decay, rows of tokens
absent from the batch keep moving on stale momentum; with Lion / Tiger every such row moves by a
full lr·sign(m). The lazy update moves only the rows the batch saw, as sparse Adam does.

Su Jianlin, "Keras实现两个优化器：Lookahead和LazyOptimizer", https://kexue.fm/archives/6869 , and
"6个派生优化器的简单介绍及其实现", https://kexue.fm/archives/7094 (LazyOptimizer as one of the
derived optimizers that wrap any optimizer: the update of embedding rows whose gradient is zero is
switched off, state included).

No hyperparameters: ``derived=[lazy]``. The global step count (Adam's bias correction) still
advances every step, as in the post's Keras code (it keeps one iteration counter).

How it plugs in: as Lookahead and layer adaptation, a step pre-hook (note the rows whose gradient
is zero, copy the tables and their state) and a step post-hook (put those rows back) on the
optimizer itself, so it wraps any optimizer, fused kernels included; a step the GradScaler or
``trainer.on_nan=skip`` skips runs no hook. The check reads the gradient after accumulation, the
all-reduce and AMP unscaling: under accumulation a row seen in any micro-batch updates, and under
DDP every rank finds the same rows. State created by this very step (the first) is zero on the
rows kept, the initial state of all the optimizers above. Sync-free (torch.where, no boolean
indexing). Factored states (Adafactor's row / column moments) are not shaped like the table and
are left as the optimizer makes them. Cost: one copy of the tables and their state per step.

On a model without an embedding table (mlp, cnn1d) it changes nothing and says so once (so a
sweep over ``derived`` options runs on every model). No state of its own: checkpoints and resume
are the optimizer's. Order 50: after layer adaptation's post-hook (40), before Lookahead's (60).
"""

from __future__ import annotations

import torch
from torch import nn

from runner.tricks import Trick


def embedding_tables(model: nn.Module) -> list:
    """The weight of every nn.Embedding in `model`, and its embedding_table(), once each."""
    found = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    fn = getattr(model, "embedding_table", None)
    t = fn() if fn is not None else None
    if t is not None:
        found.append(t)
    seen, out = set(), []
    for p in found:
        if id(p) not in seen and p.requires_grad:
            seen.add(id(p))
            out.append(p)
    return out


def idle_rows(grad: torch.Tensor) -> torch.Tensor:
    """Rows of a table whose gradient is exactly zero, as a mask broadcastable to the table."""
    idle = (grad.reshape(grad.shape[0], -1) == 0).all(dim=1)
    return idle.view(-1, *([1] * (grad.dim() - 1)))


class Lazy(Trick):
    order = 50
    figures = ()
    noop = None  # no setting makes it a no-op (it is one on models without embedding tables)
    noop_exact = None
    passes = "1"
    stackable = False  # runs using it train solo (runner.stack_run)

    def __init__(self, order: int | None = None):
        super().__init__(order)
        self.tables: list = []
        self._in_opt: set = set()
        self._saved: list = []

    def wrap_optimizer(self, opt):
        self._in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        opt.register_step_pre_hook(self._before_step)
        opt.register_step_post_hook(self._after_step)
        return opt

    def setup(self, state) -> None:
        self.tables = [p for p in embedding_tables(state.raw_model) if id(p) in self._in_opt]
        if not self.tables:
            print(
                f"warning: derived.{self.name}: {type(state.raw_model).__name__} has no "
                "embedding table, so LazyOptimizer changes nothing"
            )

    def _before_step(self, opt, args, kwargs) -> None:
        self._saved = []
        for p in self.tables:
            if p.grad is None or p.grad.is_sparse:  # none: the optimizer skips the whole table;
                continue  # sparse: the optimizer (SparseAdam) is lazy already
            st = opt.state.get(p, {})
            rows = {k: v.clone() for k, v in st.items() if _like(v, p)}
            self._saved.append((p, idle_rows(p.grad), p.detach().clone(), rows))

    @torch.no_grad()
    def _after_step(self, opt, args, kwargs) -> None:
        for p, idle, old, rows in self._saved:
            p.copy_(torch.where(idle, old, p))
            for k, v in opt.state.get(p, {}).items():
                if _like(v, p):
                    v.copy_(torch.where(idle, rows[k], v) if k in rows else v.masked_fill(idle, 0))
        self._saved = []


def _like(v, p) -> bool:
    return torch.is_tensor(v) and v.shape == p.shape
