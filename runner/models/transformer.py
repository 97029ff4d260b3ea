"""A small pre-norm Transformer encoder for text classification, trained from scratch.

Architecture: token embeddings + learned absolute positions -> dropout -> `depth` pre-norm blocks
(x + attn(LN(x)), x + FFN(LN(x)); Xiong et al. 2020, "On Layer Normalization in the Transformer
Architecture") -> final LayerNorm -> mean pooling over real tokens (or the first, [CLS], token) ->
dropout -> linear classifier. Padded positions are masked out of attention and pooling, so a batch
gives the same logits whatever its padding (tested).

Options from the blog:

- `head_size`: the per-head size of queries, keys and values, independent of `width / heads`
  (default: width // heads). Bhojanapalli et al. 2020, "Low-Rank Bottleneck in Multi-head
  Attention Models", show that with head_size = width / heads < sequence length each head's
  attention matrix is rank-limited, and propose setting head_size on its own; Su Jianlin discusses
  this key_size bottleneck in "突破瓶颈，打造更强大的Transformer" (kexue.fm).
- `talking_heads`: Talking-Heads Attention (Shazeer et al. 2020, "Talking-Heads Attention"):
  learned heads x heads mixing of the attention logits before the softmax and of the attention
  weights after it, initialised to the identity so training starts from plain multi-head
  attention; the same post of Su Jianlin presents it as a second way around the bottleneck. It
  materialises the attention matrix (no fused attention kernel), so it costs more memory.
- `activation`: `gelu` (exact, x·Φ(x)), `gelu_tanh` (0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))) or
  `gelu_sigmoid` (x·σ(1.702x)): the two elementary approximations of Hendrycks & Gimpel 2016,
  "Gaussian Error Linear Units (GELUs)", whose derivation Su Jianlin works out in
  "GELU的两个初等函数近似是怎么来的" (kexue.fm). Also `relu`.

Adversarial tricks perturb `embed(batch)` = the token-embedding output (before positions are
added), as FGM does on word embeddings (Miyato et al. 2017) and as in models.hf.
`set_grad_checkpointing(True)` recomputes each block in backward (torch.utils.checkpoint,
non-reentrant, RNG state preserved: same gradients, tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from runner.errors import ConfigError, check, in_range, positive
from runner.models.base import Model

ACTIVATIONS = ("gelu", "gelu_tanh", "gelu_sigmoid", "relu")
POOLINGS = ("mean", "cls")


def gelu_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def activation_fn(name: str):
    return {
        "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_sigmoid": gelu_sigmoid,
        "relu": F.relu,
    }[name]


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, head_size: int, dropout: float, talking_heads: bool):
        super().__init__()
        self.heads, self.head_size, self.p = heads, head_size, dropout
        self.qkv = nn.Linear(width, 3 * heads * head_size)
        self.out = nn.Linear(heads * head_size, width)
        self.talking_heads = talking_heads
        if talking_heads:
            self.mix_logits = nn.Parameter(torch.eye(heads))
            self.mix_weights = nn.Parameter(torch.eye(heads))
            self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x [B, L, width]; keep [B, L] bool, True at real tokens."""
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_size).permute(2, 0, 3, 1, 4)
        key_mask = keep[:, None, None, :]  # [B, 1, 1, L]: every query sees the real keys
        if not self.talking_heads:
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=key_mask, dropout_p=self.p if self.training else 0.0
            )
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_size)  # [B, H, L, L]
            s = torch.einsum("bhij,hg->bgij", s, self.mix_logits)
            a = s.masked_fill(~key_mask, float("-inf")).softmax(-1)
            a = torch.einsum("bhij,hg->bgij", a, self.mix_weights)
            o = self.drop(a) @ v
        return self.out(o.transpose(1, 2).reshape(B, L, self.heads * self.head_size))


class Block(nn.Module):
    def __init__(self, width, heads, head_size, ffn_mult, activation, dropout, talking_heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, head_size, dropout, talking_heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ffn_mult * width)
        self.fc2 = nn.Linear(ffn_mult * width, width)
        self.act = activation_fn(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, keep):
        x = x + self.drop(self.attn(self.ln1(x), keep))
        return x + self.drop(self.fc2(self.drop(self.act(self.fc1(self.ln2(x))))))


class Transformer(Model):
    def __init__(
        self,
        num_classes: int,
        vocab_size: int | None = None,
        max_len: int | None = None,
        pad_id: int = 0,
        width: int = 256,
        depth: int = 4,
        heads: int = 4,
        head_size: int | None = None,
        ffn_mult: int = 4,
        activation: str = "gelu",
        talking_heads: bool = False,
        dropout: float = 0.1,
        pooling: str = "mean",
        tokenizer: str = "minilm",
    ):
        super().__init__()
        if vocab_size is None or max_len is None:
            raise ConfigError(
                "dataset",
                "model=transformer reads token ids: pick a text dataset",
                "tweets, csv or hf with a text_column",
            )
        for key, v in (
            ("width", width),
            ("depth", depth),
            ("heads", heads),
            ("ffn_mult", ffn_mult),
        ):
            positive(v, f"model.{key}", integer=True)
        head_size = width // heads if head_size is None else head_size
        positive(head_size, "model.head_size", integer=True)
        check(
            activation in ACTIVATIONS,
            "model.activation",
            f"got {activation!r}",
            ", ".join(ACTIVATIONS),
        )
        check(pooling in POOLINGS, "model.pooling", f"got {pooling!r}", ", ".join(POOLINGS))
        check(
            isinstance(talking_heads, bool),
            "model.talking_heads",
            f"must be true or false, got {talking_heads!r}",
        )
        in_range(dropout, "model.dropout", 0.0, 1.0, hi_open=True)
        self.pooling, self.pad_id = pooling, pad_id
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(max_len, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(width, heads, head_size, ffn_mult, activation, dropout, talking_heads)
            for _ in range(depth)
        )
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self.grad_checkpointing = False
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed(self, batch):
        return self.tok(batch["x"])

    def embedding_table(self):
        return self.tok.weight

    def forward_embedded(self, h, batch):
        keep = batch["mask"].bool()
        L = h.shape[1]
        x = self.drop(h + self.pos.weight[:L])
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, keep, use_reentrant=False)
            else:
                x = block(x, keep)
        x = self.ln(x)
        if self.pooling == "cls":
            pooled = x[:, 0]
        else:
            w = keep.unsqueeze(-1).to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(self.drop(pooled))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = bool(enabled)
