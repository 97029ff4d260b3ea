"""1-D CNN of the mnist1d reference (Greydanus 2020, ~94% test accuracy).

Three Conv1d layers of `channels` channels (kernel 5 stride 2, kernel 3 stride 2, kernel 3 stride 2,
padding 1) with ReLU, flattened into a linear classifier; optional dropout before the classifier
and between convolutions (needed by R-Drop).
"""

from __future__ import annotations

import torch
from torch import nn

from runner.errors import in_range, positive
from runner.models.base import Model


class CNN1d(Model):
    head_modules = ("linear",)
    stackable = True

    def __init__(self, in_dim: int, num_classes: int, channels: int = 25, dropout: float = 0.0):
        super().__init__()
        positive(channels, "model.channels", integer=True)
        in_range(dropout, "model.dropout", 0.0, 1.0, hi_open=True)
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        length = in_dim
        for k, s in ((5, 2), (3, 2), (3, 2)):
            length = (length + 2 - k) // s + 1
        self.linear = nn.Linear(channels * length, num_classes)

    def forward_embedded(self, h, batch):
        h = h.reshape(*h.shape[: self._lead], 1, -1)
        h = torch.relu(self.conv1(h))
        h = self.drop(torch.relu(self.conv2(h)))
        h = self.drop(torch.relu(self.conv3(h)))
        return self.linear(h.flatten(self._lead))
