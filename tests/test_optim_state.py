"""runner.optim.state.state_bytes: the optimizer-memory count of the benchmark and the recipes."""

from __future__ import annotations

import torch

from runner.optim import Lion
from runner.optim.state import state_bytes


def _stepped(opt_cls, **kw):
    torch.manual_seed(0)
    m = torch.nn.Linear(7, 5)
    opt = opt_cls(m.parameters(), **kw)
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    return m, opt


def test_adamw_keeps_two_buffers_lion_one_step_counters_not_counted():
    m, opt = _stepped(torch.optim.AdamW, lr=1e-3)
    pb = sum(p.numel() * p.element_size() for p in m.parameters())
    assert state_bytes(opt) == 2 * pb  # exp_avg, exp_avg_sq; the 0-d `step` is not counted
    m, opt = _stepped(Lion, lr=1e-4)
    assert state_bytes(opt) == pb


def test_a_wrapper_counts_its_own_state_and_the_inner_optimizer_s():
    m, opt = _stepped(torch.optim.SGD, lr=0.1, momentum=0.9)
    pb = sum(p.numel() * p.element_size() for p in m.parameters())
    assert state_bytes(opt) == pb  # the momentum buffers

    class Wrapper:  # an optimizer that wraps another one and keeps a copy of the weights
        def __init__(self, inner):
            self.optimizer = inner
            self.state = {p: {"slow": p.detach().clone()} for p in m.parameters()}

    assert state_bytes(Wrapper(opt)) == 2 * pb
