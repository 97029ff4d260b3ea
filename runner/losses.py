"""The supervised loss of a run (the `loss` config group), its prediction rule, its metric counts,
and the divergence the consistency tricks (R-Drop, VAT) use between two predictions.

- ``ce`` (default): softmax cross-entropy, one label per row (``y`` integer class ids);
  prediction argmax; metric ``acc``. Divergence: KL(softmax(p) ‖ softmax(q)), or with
  ``symmetric`` KL(p‖q) + KL(q‖p) = Σ_c (p_c − q_c)(log p_c − log q_c): exactly the numbers
  ``rdrop.symmetric_kl`` and ``vat.kl_from_logits`` computed before this module existed.
- ``multilabel_ce``: Su Jianlin's generalisation of softmax + cross-entropy to multi-label
  classification ("将“Softmax+交叉熵”推广到多标签分类问题", https://kexue.fm/archives/7359).
  With scores s and multi-hot labels (Ω_pos, Ω_neg the positive / negative classes of a row):

      loss = log(1 + Σ_{i∈Ω_neg} e^{s_i}) + log(1 + Σ_{j∈Ω_pos} e^{−s_j})

  and a class is predicted present when s_i > 0 (the threshold the loss builds in).
- ``bce``: sigmoid binary cross-entropy per class, averaged over classes (torch's
  ``binary_cross_entropy_with_logits`` with its default mean); predicted present when
  σ(s_i) > 0.5, i.e. s_i > 0.

Both multi-label losses use the divergence of Su Jianlin's "GlobalPointer下的“KL散度”应该是怎样的？"
(https://kexue.fm/archives/9039): for scores s, t of the same row

      D(s, t) = Σ_i (σ(s_i) − σ(t_i)) (s_i − t_i)

the symmetric KL of the per-class Bernoulli distributions σ(s_i), σ(t_i) summed over classes
(the multi-label counterpart of the symmetric KL above). It is symmetric by construction, so
R-Drop and VAT both use it as it is (``symmetric`` changes nothing).

Multi-label metrics: ``acc`` is the exact-match accuracy (every class of the row right), ``f1``
micro-averaged (2·TP / (2·TP + FP + FN) over all classes and rows), ``f1_macro`` the mean over
classes of each class's F1 (a class with no positive and no prediction counts 0, as
scikit-learn's default). The metric counts are integers kept on the device (no host sync):
``counts`` returns one vector per batch, summed over batches, and ``metrics`` turns a sum (a
tensor, or the list the engine read from it) into figures, so a figure does not depend on how
rows were batched.

Semi-supervised batches carry a ``labeled`` bool tensor: the loss is the mean over labelled rows
only (0, with a graph, when a batch has none) and the counts see labelled rows only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import ConfigError


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(p_logits) ‖ softmax(q_logits))."""
    lp = F.log_softmax(p_logits.float(), -1)
    lq = F.log_softmax(q_logits.float(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p1‖p2) + KL(p2‖p1) = Σ_c (p1 - p2)(log p1 - log p2)."""
    lp1 = F.log_softmax(logits1.float(), -1)
    lp2 = F.log_softmax(logits2.float(), -1)
    return ((lp1.exp() - lp2.exp()) * (lp1 - lp2)).sum(-1)


def multilabel_divergence(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample Σ_i (σ(s_i) − σ(t_i))(s_i − t_i) (kexue.fm/archives/9039)."""
    s, t = s.float(), t.float()
    return ((torch.sigmoid(s) - torch.sigmoid(t)) * (s - t)).sum(-1)


def multilabel_ce(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample log(1 + Σ_neg e^{s_i}) + log(1 + Σ_pos e^{−s_j}) (kexue.fm/archives/7359):
    the blog's code, with −inf (instead of −1e12) masking the other side of each logsumexp."""
    s = s.float()
    pos = y > 0.5
    zero = s.new_zeros(s.shape[:-1] + (1,))
    neg_part = torch.cat([s.masked_fill(pos, float("-inf")), zero], -1)
    pos_part = torch.cat([(-s).masked_fill(~pos, float("-inf")), zero], -1)
    return torch.logsumexp(neg_part, -1) + torch.logsumexp(pos_part, -1)


def _floats(c) -> list:
    """Counts as Python floats: a device tensor (one host read) or a list already read."""
    return [float(v) for v in (c.tolist() if torch.is_tensor(c) else c)]


def _rows(t: torch.Tensor) -> torch.Tensor:
    """len(t) as a 0-d long tensor on t's device, made by a fill (no host-to-device copy)."""
    return torch.full((), len(t), dtype=torch.long, device=t.device)


def _masked_mean(per_row: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
    w = labeled.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp(min=1)


class Loss:
    """The interface: ``loss(logits, y, labeled=None)`` (mean over the batch, or over its
    labelled rows), ``per_sample``, ``sum`` (evaluation), ``predict`` (class ids, or a 0/1
    matrix multi-label), ``counts`` / ``metrics`` (train and eval figures),
    ``divergence(p_logits, q_logits, symmetric=False)`` (per sample)."""

    multilabel = False
    #: the figures `metrics` returns (logged as train/<m>, val/<m>, test/<m>)
    figures = ("acc",)
    #: what trainer.select=auto selects the best checkpoint on
    select = "val/acc"

    def __call__(self, logits, y, labeled=None):
        if labeled is None:
            return self.mean(logits, y)
        return _masked_mean(self.per_sample(logits, self.fill(y, labeled)), labeled)

    def mean(self, logits, y):
        return self.per_sample(logits, y).mean()

    def sum(self, logits, y):
        return self.per_sample(logits, y).sum()

    def fill(self, y, labeled):
        """Unlabelled rows' targets (-1) replaced by a valid placeholder the mask then drops."""
        return y.clamp(min=0)

    def check_data(self, multilabel: bool, dataset: str) -> None:
        if multilabel != self.multilabel:
            want = "multi-hot labels (several per row)" if self.multilabel else "one label per row"
            have = "multi-hot labels" if multilabel else "one label per row"
            allowed = "multilabel_ce, bce" if multilabel else "ce"
            raise ConfigError(
                "loss", f"{self.name} needs {want}; dataset={dataset} has {have}", allowed
            )

    @property
    def name(self) -> str:
        return type(self).__name__.lower()


class CE(Loss):
    """Softmax cross-entropy (today's loss): ``F.cross_entropy`` on float32 logits."""

    name = "ce"

    def mean(self, logits, y):
        return F.cross_entropy(logits.float(), y)

    def per_sample(self, logits, y):
        return F.cross_entropy(logits.float(), y, reduction="none")

    def sum(self, logits, y):
        return F.cross_entropy(logits.float(), y, reduction="sum")

    def predict(self, logits):
        return logits.argmax(-1)

    def counts(self, logits, y, labeled=None):
        hit = self.predict(logits) == y
        if labeled is not None:
            return torch.stack([(hit & labeled).sum(), labeled.sum()])
        return torch.stack([hit.sum(), _rows(hit)])

    def metrics(self, c) -> dict:
        c = _floats(c)
        return {"acc": c[0] / max(c[1], 1)}

    def divergence(self, p_logits, q_logits, symmetric: bool = False):
        return symmetric_kl(p_logits, q_logits) if symmetric else kl(p_logits, q_logits)


class MultiLabel(Loss):
    """Shared by the multi-label losses: prediction s > 0, exact-match acc, micro/macro F1."""

    multilabel = True
    figures = ("acc", "f1", "f1_macro")
    select = "val/f1"

    def fill(self, y, labeled):
        return y.clamp(min=0)

    def predict(self, logits):
        """Present where the score is above 0 (bce: σ(s) > 0.5, the same set)."""
        return logits > 0

    def counts(self, logits, y, labeled=None):
        """[exact matches, rows, TP per class, FP per class, FN per class]."""
        pred, yb = self.predict(logits), y > 0.5
        if labeled is not None:
            keep = labeled[:, None]
            pred, yb = pred & keep, yb & keep
        rows = labeled.sum() if labeled is not None else _rows(pred)
        exact = (pred == yb).all(-1)
        exact = (exact & labeled).sum() if labeled is not None else exact.sum()
        tp, fp, fn = (pred & yb).sum(0), (pred & ~yb).sum(0), (~pred & yb).sum(0)
        return torch.cat([torch.stack([exact, rows]), tp, fp, fn])

    def metrics(self, c) -> dict:
        c = _floats(c)
        k = (len(c) - 2) // 3
        tp, fp, fn = c[2 : 2 + k], c[2 + k : 2 + 2 * k], c[2 + 2 * k :]
        f1 = lambda a, b, d: 2 * a / (2 * a + b + d) if 2 * a + b + d else 0.0
        return {
            "acc": c[0] / max(c[1], 1),
            "f1": f1(sum(tp), sum(fp), sum(fn)),
            "f1_macro": sum(f1(*z) for z in zip(tp, fp, fn)) / max(k, 1),
        }

    def divergence(self, p_logits, q_logits, symmetric: bool = False):
        return multilabel_divergence(p_logits, q_logits)


class MultiLabelCE(MultiLabel):
    """Su Jianlin's multi-label softmax cross-entropy (kexue.fm/archives/7359), threshold 0."""

    name = "multilabel_ce"

    def per_sample(self, logits, y):
        return multilabel_ce(logits, y)


class BCE(MultiLabel):
    """Sigmoid binary cross-entropy, the mean over classes (and rows); threshold σ(s) > 0.5."""

    name = "bce"

    def mean(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())

    def per_sample(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits.float(), y.float(), reduction="none").mean(
            -1
        )


def select_metric(select: str, loss: Loss) -> str:
    """trainer.select resolved: `auto` is the loss's own (val/acc, or val/f1 multi-label)."""
    if select in (None, "auto"):
        return type(loss).select
    allowed = ", ".join(["auto"] + [f"val/{m}" for m in loss.figures])
    if not (isinstance(select, str) and select.startswith("val/") and select[4:] in loss.figures):
        raise ConfigError(
            "trainer.select", f"{select!r} is not a validation metric of loss={loss.name}", allowed
        )
    return select


def default() -> Loss:
    """The loss of a State built without one (tests, scripts): today's cross-entropy."""
    return CE()
