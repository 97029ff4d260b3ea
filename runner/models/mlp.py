"""Residual MLP for vector inputs.

Shaped like the mnist1d reference MLP (Greydanus 2020: Linear(40,100)-ReLU-Linear(100,100)-ReLU-
Linear(100,10), ~68% test accuracy), with residual connections around the hidden layers so depth
can grow, and optional dropout (needed by R-Drop).
"""

from __future__ import annotations

import torch
from torch import nn

from runner.errors import in_range, positive
from runner.models.base import Model


class Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h):
        return h + self.drop(torch.relu(self.fc(h)))


class MLP(Model):
    head_modules = ("out",)
    stackable = True

    def __init__(
        self, in_dim: int, num_classes: int, hidden: int = 100, depth: int = 2, dropout: float = 0.0
    ):
        super().__init__()
        positive(hidden, "model.hidden", integer=True)
        positive(depth, "model.depth", integer=True)
        in_range(dropout, "model.dropout", 0.0, 1.0, hi_open=True)
        self.inp = nn.Linear(in_dim, hidden)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.blocks = nn.Sequential(*[Block(hidden, dropout) for _ in range(depth - 1)])
        self.out = nn.Linear(hidden, num_classes)

    def forward_embedded(self, h, batch):
        h = self.drop(torch.relu(self.inp(h.flatten(self._lead))))
        return self.out(self.blocks(h))
