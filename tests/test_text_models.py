"""Text models: GELU variants, head_size, talking heads, the embed / forward_embedded contract,
dynamic padding == full padding, gradient checkpointing == plain backward, one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.data import text as T
from runner.errors import ConfigError


@pytest.fixture(scope="module")
def tweets_max():
    """40 tweets tokenized with minilm's tokenizer, padded to max_len (no collate)."""
    from runner.data.tweets import build

    return build(
        tokenizer="minilm", train_size=24, val_size=8, test_size=8, max_len=64, padding="max"
    )


_MINILM = {}


def minilm_copy():
    """MiniLM loads in seconds on a busy CPU: load once per session, hand out copies."""
    import copy

    from runner.models.minilm import MiniLM

    if "m" not in _MINILM:
        _MINILM["m"] = MiniLM(num_classes=3, max_len=64)
    return copy.deepcopy(_MINILM["m"])


def tiny_transformer(data, **kw):
    from runner.models.transformer import Transformer

    args = dict(
        num_classes=3,
        vocab_size=data.info["vocab_size"],
        max_len=data.info["max_len"],
        width=32,
        depth=2,
        heads=2,
        dropout=0.0,
    )
    args.update(kw)
    return Transformer(**args)


def make_model(kind, data, **kw):
    if kind.startswith("transformer"):
        return tiny_transformer(data, talking_heads=kind.endswith("talking"), **kw)
    m = minilm_copy()  # the HFEncoder (model=hf) loading path is run by test_text_train
    if kind == "hf":
        m.pooling = "cls"  # model=hf's default head
    return m


# -- activations, head size, talking heads ----------------------------------------------------


def test_gelu_variants_are_the_formulas():
    from runner.models.transformer import activation_fn

    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    exact = x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    tanh = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    sig = x / (1 + torch.exp(-1.702 * x))
    assert torch.allclose(activation_fn("gelu")(x), exact, atol=1e-12)
    assert torch.allclose(activation_fn("gelu_tanh")(x), tanh, atol=1e-12)
    assert torch.allclose(activation_fn("gelu_sigmoid")(x), sig, atol=1e-12)
    # both are approximations of the exact form: tanh within 1e-3, sigmoid within 0.03
    assert (tanh - exact).abs().max() < 1e-3 < (sig - exact).abs().max() < 0.03


def test_head_size_is_independent_of_width_and_heads(tweets_max):
    m = tiny_transformer(tweets_max, width=32, heads=2, head_size=48)
    attn = m.blocks[0].attn
    assert attn.qkv.weight.shape == (3 * 2 * 48, 32) and attn.out.weight.shape == (32, 96)
    assert m(tweets_max.train).shape == (24, 3)
    assert tiny_transformer(tweets_max, width=32, heads=4).blocks[0].attn.head_size == 8


def reference_attention(attn, x, keep):
    """Multi-head attention written out, with optional talking-heads mixing."""
    B, L, _ = x.shape
    H, D = attn.heads, attn.head_size
    q, k, v = attn.qkv(x).view(B, L, 3, H, D).unbind(2)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D)
    if attn.talking_heads:
        logits = torch.einsum("bhij,hg->bgij", logits, attn.mix_logits)
    logits = logits.masked_fill(~keep[:, None, None, :], -1e30)
    w = logits.softmax(-1)
    if attn.talking_heads:
        w = torch.einsum("bhij,hg->bgij", w, attn.mix_weights)
    o = torch.einsum("bhij,bjhd->bihd", w, v).reshape(B, L, H * D)
    return attn.out(o)


@pytest.mark.parametrize("talking", [False, True])
def test_attention_matches_reference(talking):
    from runner.models.transformer import Attention

    torch.manual_seed(0)
    attn = Attention(width=16, heads=4, head_size=6, dropout=0.0, talking_heads=talking).eval()
    if talking:  # away from the identity init, so the mixing is really exercised
        with torch.no_grad():
            attn.mix_logits.add_(0.3 * torch.randn(4, 4))
            attn.mix_weights.add_(0.3 * torch.randn(4, 4))
    x = torch.randn(3, 7, 16)
    keep = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5]).bool()
    got, want = attn(x, keep), reference_attention(attn, x, keep)
    assert torch.allclose(got, want, atol=1e-5)


def test_talking_heads_starts_as_plain_attention(tweets_max):
    torch.manual_seed(0)
    plain = tiny_transformer(tweets_max).eval()
    torch.manual_seed(0)
    talking = tiny_transformer(tweets_max, talking_heads=True).eval()
    missing = talking.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert all("mix_" in k for k in missing) and missing
    b = {k: v[:6] for k, v in tweets_max.train.items()}
    assert torch.allclose(plain(b), talking(b), atol=1e-5)


# -- the adversarial interface ----------------------------------------------------------------

KINDS = ["transformer", "transformer_talking", "minilm", "hf"]


@pytest.mark.parametrize("kind", KINDS)
def test_embed_forward_embedded_contract(kind, tweets_max):
    torch.manual_seed(0)
    m = make_model(kind, tweets_max).eval()
    b = T.TrimPadding()({k: v[:4] for k, v in tweets_max.train.items()})
    h = m.embed(b)
    # the perturbed tensor is the word-embedding output: one vector per token id
    emb = m.tok if kind.startswith("transformer") else m.encoder.get_input_embeddings()
    assert torch.equal(h, emb(b["x"]))
    logits = m(b)
    assert torch.allclose(logits, m.forward_embedded(h, b), atol=1e-6)
    delta = 0.5 * torch.randn_like(h)
    assert torch.allclose(m(b, delta=delta), m.forward_embedded(h + delta, b), atol=1e-5)
    assert not torch.allclose(m(b, delta=delta), logits, atol=1e-4)
    # return_embed keeps d(loss)/d(embedding) for FGM / PGD
    out, e = m(b, return_embed=True)
    F.cross_entropy(out, b["y"]).backward()
    assert e.grad is not None and e.grad.shape == h.shape and e.grad.abs().sum() > 0
    # padded positions get no gradient: they do not influence the logits
    assert e.grad[b["mask"] == 0].abs().max() == 0


# -- dynamic padding == full padding ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dynamic_padding_gives_the_same_logits(kind, tweets_max):
    torch.manual_seed(0)
    m = make_model(kind, tweets_max).eval()
    split = tweets_max.train
    full, trimmed = [], []
    trim = T.TrimPadding()
    with torch.no_grad():
        for i in range(0, 24, 8):  # batches of different longest lengths
            b = {k: v[i : i + 8] for k, v in split.items()}
            tb = trim(b)
            assert tb["x"].shape[1] < b["x"].shape[1] == 64
            full.append(m(b))
            trimmed.append(m(tb))
    assert torch.allclose(torch.cat(full), torch.cat(trimmed), atol=2e-5)


# -- gradient checkpointing == plain backward --------------------------------------------------


@pytest.mark.parametrize("kind", ["transformer", "transformer_talking", "minilm"])
def test_grad_checkpointing_same_gradients(kind, tweets_max):
    """In train mode with dropout on: checkpointing must replay the same dropout masks."""
    torch.manual_seed(0)
    kw = {"dropout": 0.1} if kind.startswith("transformer") else {}
    m = make_model(kind, tweets_max, **kw).train()
    b = T.TrimPadding()({k: v[:4] for k, v in tweets_max.train.items()})

    def grads():
        m.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        F.cross_entropy(m(b), b["y"]).backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    plain = grads()
    m.set_grad_checkpointing(True)
    ckpt = grads()
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for n in plain:
        assert torch.allclose(plain[n], ckpt[n], atol=1e-6, rtol=1e-5), n
    # and checkpointing was really on: the encoder's blocks ran through torch.utils.checkpoint
    assert m.grad_checkpointing
    m.set_grad_checkpointing(False)
    assert not m.grad_checkpointing


def test_grad_checkpointing_really_recomputes(tweets_max, monkeypatch):
    import runner.models.transformer as tr

    calls = []
    real = tr.checkpoint
    monkeypatch.setattr(tr, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = tiny_transformer(tweets_max).train()
    b = {k: v[:4] for k, v in tweets_max.train.items()}
    m(b).sum().backward()
    assert not calls
    m.set_grad_checkpointing(True)
    m(b).sum().backward()
    assert len(calls) == 2  # one per block
    with torch.no_grad():  # evaluation never recomputes
        m.eval()(b)
    assert len(calls) == 2


# -- one-line errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,key,match",
    [
        ({"activation": "swish"}, "model.activation", "gelu, gelu_tanh, gelu_sigmoid"),
        ({"pooling": "max"}, "model.pooling", "mean, cls"),
        ({"head_size": 0}, "model.head_size", "> 0"),
        ({"dropout": 1.0}, "model.dropout", "[0.0, 1.0)"),
        ({"vocab_size": None}, "dataset", "pick a text dataset"),
    ],
)
def test_transformer_bad_config(kw, key, match, tweets_max):
    with pytest.raises(ConfigError) as e:
        tiny_transformer(tweets_max, **kw)
    assert str(e.value).startswith(key + ":") and match in str(e.value) and "\n" not in str(e.value)


def test_hf_model_errors_are_one_line(tweets_max, tmp_path):
    from runner.models.hf import HFEncoder

    cases = [
        (dict(name="surely-not/a-model-xyz"), "model.name", "Hub cannot be reached"),
        (dict(name=str(tmp_path)), "model.name", "from that folder"),
        (dict(name=None), "model.name", "required"),
        (dict(name=T.minilm_path(), pooling="max"), "model.pooling", "cls, mean, pooler"),
        (dict(name=T.minilm_path(), max_len=None), "dataset", "pick a text dataset"),
        (dict(name=T.minilm_path(), max_len=1024), "dataset.max_len", "512 positions"),
    ]
    for kw, key, match in cases:
        args = {"num_classes": 3, "max_len": 48, **kw}
        with pytest.raises(ConfigError) as e:
            HFEncoder(**args)
        msg = str(e.value)
        assert msg.startswith(key + ":") and match in msg and "\n" not in msg, msg


def test_tokenizer_errors_are_one_line():
    T._TOKENIZERS.pop("surely-not/a-tokenizer-xyz", None)
    with pytest.raises(ConfigError) as e:
        T.load_tokenizer("surely-not/a-tokenizer-xyz", "tweets")
    assert str(e.value).startswith("model.tokenizer:") and "cannot be reached" in str(e.value)
