"""Performance behaviour (never timings: those live in scripts/bench.py).

- The training step makes no host-device synchronisation: host reads (`.item()`, `bool(t)`,
  `.tolist()`, ...) happen only on log and evaluation steps. CPU has no sync-debug mode
  (`torch.cuda.set_sync_debug_mode` is CUDA-only), so the host reads are counted by patching
  the Tensor methods that force one, with the device plan set as on CUDA (the per-step NaN check
  is a CPU-only convenience).
- Device-resident batching yields every sample once per epoch, also when resumed mid-epoch.
- The GPU defaults (bf16 / fp16 + GradScaler, fused kernels, TF32, pinned non-blocking copies,
  compile, no per-step finite check) are chosen from faked capability checks.
"""

from __future__ import annotations

import dataclasses
import sys
from unittest import mock

import pytest
import torch

from runner import device as devmod
from runner import engine
from runner.data.batching import IndexBatcher
from runner.device import Caps, plan

from conftest import ROOT, conf_options, train_run


def scripts_importable() -> None:
    """Let the tests import the benchmark's modules (scripts/ is not a package)."""
    path = str(ROOT / "scripts")
    if path not in sys.path:
        sys.path.insert(0, path)


#: Tensor methods that read a value on the host (a device sync on CUDA)
SYNC_METHODS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "cpu")


class SyncCounter:
    """Counts host reads of tensor values while `active`, and which step they fell in."""

    def __init__(self, monkeypatch):
        self.active = False
        self.total = 0
        self.per_step = []  # (log_now, host reads inside train_step)
        for name in SYNC_METHODS:
            orig = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(orig))
        f_orig, s_orig = engine.fit, engine.train_step

        def fit(*a, **k):
            self.active = True
            try:
                return f_orig(*a, **k)
            finally:
                self.active = False

        def train_step(state, micro, loss_fn, bwd_fn, log_now):
            before = self.total
            s_orig(state, micro, loss_fn, bwd_fn, log_now)
            self.per_step.append((log_now, self.total - before))

        monkeypatch.setattr(engine, "fit", fit)
        monkeypatch.setattr(engine, "train_step", train_step)
        # as on CUDA: the NaN check runs on log steps only
        p_orig = devmod.plan
        monkeypatch.setattr(
            devmod,
            "plan",
            lambda *a, **k: dataclasses.replace(p_orig(*a, **k), finite_check_each_step=False),
        )

    def _wrap(self, orig):
        counter = self

        def f(t, *a, **k):
            if counter.active:
                counter.total += 1
            return orig(t, *a, **k)

        return f


def _overrides(n_steps: int, extra: list[str]) -> list[str]:
    return [
        f"trainer.max_steps={n_steps}",
        f"trainer.log_every={n_steps}",
        f"trainer.eval_every={n_steps}",
        "trainer.progress=false",
        "trainer.batch_size=16",
        "dataset.num_samples=600",
        "dataset.val_size=50",
        *extra,
    ]


def _count(monkeypatch, tmp_path, n_steps, extra) -> SyncCounter:
    with monkeypatch.context() as m:
        c = SyncCounter(m)
        s = train_run(_overrides(n_steps, extra), tmp_path / f"run{n_steps}")
    assert s["status"] == "completed", s
    return c


@pytest.mark.parametrize("model", ["mlp", "cnn1d"])
def test_host_reads_do_not_grow_with_steps(monkeypatch, tmp_path, model):
    """The whole loop (batching included) reads the device only at log/eval points: a run of 8
    steps and one of 4 steps (each logging and evaluating once, at the end) make the same
    number of host reads, and the steps before the last make none."""
    c4 = _count(monkeypatch, tmp_path, 4, [f"model={model}"])
    c8 = _count(monkeypatch, tmp_path, 8, [f"model={model}"])
    assert c8.total == c4.total > 0  # > 0: the counter sees the log/eval reads
    assert [n for log, n in c8.per_step if not log] == [0] * 7
    assert [log for log, _ in c8.per_step] == [False] * 7 + [True]


def _trick_cases():
    cases = [f"reg=[{r}]" for r in conf_options("reg")]
    cases += [f"clip={c}" for c in conf_options("clip") if c != "none"]
    cases += [f"derived=[{d}]" for d in conf_options("derived")]
    cases += [f"optimizer={o}" for o in conf_options("optimizer")]
    # losses (multi-label ones on multi-hot data) and semi-supervised batches (a `labeled` mask)
    cases += [
        f"loss={o}" + (" dataset=mnist1d_multi" if o != "ce" else "") for o in conf_options("loss")
    ]
    cases += [
        "dataset.labeled_fraction=0.2 reg=[vat]",
        "dataset=mnist1d_multi loss=multilabel_ce dataset.labeled_fraction=0.2 reg=[rdrop]",
    ]
    cases += ["reg=[fgm] reg.fgm.mode=adv", "reg=[pgd] reg.pgd.mode=adv"]  # forms (space-separated)
    return [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_SYNCS[c]))
        if c in KNOWN_SYNCS
        else c
        for c in cases
    ]


#: host reads that are not ours to remove (the test fails when they go away: strict xfail)
KNOWN_SYNCS: dict = {}  # (runner.optim.adafactor replaced torch's, which read its step counter)


@pytest.mark.parametrize("case", _trick_cases())
def test_no_host_read_inside_a_step(monkeypatch, tmp_path, case):
    """Every trick, clipping mode, derived optimizer and optimizer keeps the step sync-free:
    the steps that do not log make no host read at all."""
    c = _count(monkeypatch, tmp_path, 4, case.split())
    silent = [n for log, n in c.per_step if not log]
    assert len(silent) == 3
    assert silent == [0, 0, 0], f"{case}: host reads inside non-logging steps: {silent}"


def test_nan_still_stops_with_the_cuda_plan(monkeypatch, tmp_path):
    """Without the per-step check (CUDA plan) a NaN is still caught, at the next log step."""
    with monkeypatch.context() as m:
        SyncCounter(m)
        s = train_run(_overrides(4, ["optimizer.lr=1e30"]), tmp_path / "nan")
    assert s["status"] == "failed"
    assert "non-finite" in s["error"] and "checked on log steps" in s["error"]


# -- batching ---------------------------------------------------------------------------------


def test_batcher_every_sample_once_per_epoch_and_on_resume():
    n = 103
    split = {"x": torch.arange(n).float().unsqueeze(1), "y": torch.arange(n)}
    b = IndexBatcher(split, batch_size=10, seed=3)
    assert b.steps_per_epoch == 10
    for epoch in range(3):
        full = [bt["y"] for bt in b.epoch(epoch)]
        seen = torch.cat(full)
        assert len(seen) == 100 and len(set(seen.tolist())) == 100  # each once, 3 dropped
        assert all(torch.equal(bt["x"][:, 0].long(), bt["y"]) for bt in b.epoch(epoch))
        resumed = [bt["y"] for bt in b.epoch(epoch, start=4)]
        assert all(torch.equal(a, r) for a, r in zip(full[4:], resumed))
    assert not torch.equal(b.order(0), b.order(1))  # a fresh shuffle each epoch


def test_batches_are_views_of_device_tensors_not_a_dataloader():
    """Batches are gathered from the resident split by one index op per tensor (no workers,
    no per-sample Python)."""
    split = {"x": torch.randn(50, 4), "y": torch.arange(50)}
    b = IndexBatcher(split, batch_size=7, seed=0)
    with mock.patch("torch.utils.data.DataLoader", side_effect=AssertionError("DataLoader")):
        batches = list(b.epoch(0))
    assert len(batches) == 7
    for bt in batches:
        assert torch.equal(split["x"][bt["y"]], bt["x"])


# -- GPU defaults, chosen from faked capability checks ----------------------------------------


def test_cuda_plan_is_fast_by_default():
    p = plan("auto", "auto", Caps(cuda=True, bf16=True, device_count=1))
    assert (p.device, p.precision, p.amp_dtype, p.scaler) == ("cuda", "bf16", torch.bfloat16, False)
    assert p.fused and p.tf32 and p.pin_memory and not p.finite_check_each_step
    old = plan("auto", "auto", Caps(cuda=True, bf16=False, device_count=1))  # e.g. a V100
    assert (old.precision, old.amp_dtype, old.scaler) == ("fp16", torch.float16, True)
    assert not plan("auto", "auto", Caps(cuda=True, bf16=True)).compile
    assert plan("cuda:1", "auto", Caps(cuda=True, bf16=True), compile=True).compile


def test_cpu_plan():
    p = plan("auto", "auto", Caps(cuda=False))
    assert (p.device, p.precision, p.scaler, p.tf32, p.pin_memory) == (
        "cpu",
        "fp32",
        False,
        False,
        False,
    )
    assert p.fused and p.finite_check_each_step
    assert plan("cpu", "bf16", Caps(cuda=False)).amp_dtype == torch.bfloat16


def test_setup_backends_turns_on_tf32_only_for_cuda():
    # saved and restored by hand: these are torch backend flags, not plain attributes, and
    # pytest 9's monkeypatch cannot undo them (it deletes what it thinks it added)
    mm, cd = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (mm.allow_tf32, cd.allow_tf32)
    try:
        mm.allow_tf32, cd.allow_tf32 = False, False
        devmod.setup_backends(plan("auto", "auto", Caps(cuda=False)))
        assert not mm.allow_tf32 and not cd.allow_tf32
        devmod.setup_backends(plan("auto", "auto", Caps(cuda=True, bf16=True)))
        assert mm.allow_tf32 and cd.allow_tf32
    finally:
        mm.allow_tf32, cd.allow_tf32 = saved


def test_to_device_pins_and_copies_non_blocking_for_cuda():
    t = mock.MagicMock()
    t.device.type = "cpu"
    t.is_pinned.return_value = False
    devmod.to_device(t, "cuda:0")
    t.pin_memory.assert_called_once_with()
    t.pin_memory.return_value.to.assert_called_once_with(torch.device("cuda:0"), non_blocking=True)
    pinned = mock.MagicMock()  # already page-locked (a streamed batch): not pinned again
    pinned.device.type = "cpu"
    pinned.is_pinned.return_value = True
    devmod.to_device(pinned, "cuda")
    pinned.pin_memory.assert_not_called()
    pinned.to.assert_called_once_with(torch.device("cuda"), non_blocking=True)
    x = torch.randn(3)
    assert devmod.to_device(x, "cpu") is x  # nothing to do on CPU (no pinning without CUDA)


def test_data_stays_on_the_gpu_only_when_it_fits():
    gpu = plan("auto", "auto", Caps(cuda=True, bf16=True, device_count=1))
    roomy, tight = Caps(cuda=True, free_mem=40 << 30), Caps(cuda=True, free_mem=1 << 30)
    assert devmod.data_on_device("auto", gpu, 2 << 30, roomy)  # 2 GB of 40 GB free
    assert not devmod.data_on_device("auto", gpu, 2 << 30, tight)  # 2 GB of 1 GB free: stream
    assert devmod.data_on_device(True, gpu, 2 << 30, tight)  # the user's word wins
    assert not devmod.data_on_device(False, gpu, 1, roomy)
    cpu = plan("auto", "auto", Caps(cuda=False))
    assert devmod.data_on_device("auto", cpu, 1 << 40)  # on CPU the host is the device
    assert not devmod.data_on_device(False, cpu, 1)  # streamed on CPU too (tests the path)


def test_streamed_batches_are_pinned_and_copied_non_blocking(monkeypatch):
    """trainer.data_on_device=false on a GPU: the batcher gathers each batch on the host, pins
    it and copies it non-blocking; the batches are the device-resident batcher's, row for row."""
    split = {"x": torch.randn(50, 3), "y": torch.arange(50)}
    calls = []
    orig_to = torch.Tensor.to

    def fake_to(self, *a, **k):
        if a and str(a[0]).startswith("cuda"):
            calls.append(("to", str(a[0]), k.get("non_blocking")))
            return self.clone()
        return orig_to(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: False)
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    streamed = list(IndexBatcher(split, 10, seed=2, device="cuda").epoch(1))
    resident = list(IndexBatcher(split, 10, seed=2).epoch(1))
    assert len(streamed) == len(resident) == 5
    for s_, r in zip(streamed, resident):
        assert torch.equal(s_["x"], r["x"]) and torch.equal(s_["y"], r["y"])
    # per batch and tensor: pinned, then one non-blocking copy to the GPU
    assert calls == ["pin", ("to", "cuda", True)] * 10


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "model=transformer",
            "model.width=32",
            "model.depth=1",
            "model.heads=2",
            "dataset=tweets",
            "dataset.padding=bucket",
            "dataset.train_size=64",
            "dataset.val_size=32",
            "dataset.test_size=32",
            "trainer.batch_size=16",
        ],
    ],
)
def test_streamed_data_trains_exactly_like_resident_data(tmp_path, extra):
    """The streamed path (trainer.data_on_device=false: splits on the host, each batch gathered
    and copied) gives the same metrics, row for row, as device-resident data."""
    from conftest import read_rows, strip_timing

    over = [
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "trainer.log_every=2",
        "trainer.progress=false",
        *extra,
    ]
    a = train_run(over + ["trainer.data_on_device=true"], tmp_path / "resident")
    b = train_run(over + ["trainer.data_on_device=false"], tmp_path / "streamed")
    assert a["status"] == b["status"] == "completed"
    assert strip_timing(read_rows(tmp_path / "resident")) == strip_timing(
        read_rows(tmp_path / "streamed")
    )


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_fused_kernels_where_the_optimizer_has_them(opt):
    from runner import build
    from runner.config import compose

    cfg = compose([f"optimizer={opt}"])
    model = torch.nn.Linear(3, 2)
    o = build.optimizer(cfg, model, fused_ok=plan("auto", "auto", Caps(cuda=False)).fused)
    assert o.defaults.get("fused") is True
    o = build.optimizer(compose([f"optimizer={opt}", "optimizer.fused=false"]), model, True)
    assert not o.defaults.get("fused")


def test_compile_flag_reaches_the_model(monkeypatch, tmp_path):
    """trainer.compile=true wraps the model in torch.compile (faked here: no 20 s compile)."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, **k: seen.append(m) or m)
    s = train_run(_overrides(2, ["trainer.compile=true"]), tmp_path / "c")
    assert s["status"] == "completed" and len(seen) == 1
    seen.clear()
    train_run(_overrides(2, []), tmp_path / "nc")
    assert seen == []


def test_dynamic_padding_reads_no_device_value_per_batch(monkeypatch, tmp_path):
    """Text batches are trimmed to their longest row (dynamic padding) from row lengths kept on
    the host: no device read per batch."""
    import random

    rnd = random.Random(0)
    lines = ["text,label"] + [
        f"{' '.join(rnd.choice(['good', 'bad', 'car', 'road']) for _ in range(rnd.randint(1, 12)))}"
        f",{rnd.choice(['pos', 'neg'])}"
        for _ in range(200)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    extra = [
        "model=transformer",
        "model.tokenizer=bytes",
        "model.width=16",
        "model.depth=1",
        "model.heads=2",
        "dataset=csv",
        f"dataset.path={tmp_path / 't.csv'}",
        "dataset.text_column=text",
        "dataset.max_len=64",
    ]
    over = lambda n: [
        o
        for o in _overrides(n, extra)
        if not o.startswith("dataset.num_samples") and not o.startswith("dataset.val_size")
    ]
    counts = []
    for n in (4, 8):
        with monkeypatch.context() as m:
            c = SyncCounter(m)
            s = train_run(over(n), tmp_path / f"run{n}")
        assert s["status"] == "completed", s
        counts.append(c)
    assert counts[1].total == counts[0].total > 0
    assert [k for log, k in counts[1].per_step if not log] == [0] * 7


def test_host_view_trims_like_the_device_read():
    from runner.data.base import take
    from runner.data.text import TrimPadding

    g = torch.Generator().manual_seed(0)
    lens = torch.randint(1, 40, (60,), generator=g)
    mask = (torch.arange(48)[None, :] < lens[:, None]).long()
    split = {"x": mask * 7, "mask": mask, "y": torch.zeros(60, dtype=torch.long)}
    trim = TrimPadding(multiple=8)
    view = trim.host_view(split)
    for _ in range(20):
        rows = torch.randperm(60, generator=g)[:5]
        a, b = trim(take(split, rows)), view(take(split, rows), rows.numpy())
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert a["x"].shape[1] == min(48, -(-int(lens[rows].max()) // 8) * 8)


def test_grad_norm_equals_torch_total_norm():
    """The engine's one-group fast path of the gradient norm gives torch's number exactly."""
    from runner.engine import State

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    model(torch.randn(4, 7)).pow(2).sum().backward()
    st = State(
        cfg=None,
        plan=plan("cpu", "fp32", Caps(cuda=False)),
        model=model,
        raw_model=model,
        optimizer=None,
        scheduler=None,
        tricks=[],
        data=None,
        batcher=None,
        total_steps=1,
    )
    expect = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert torch.equal(st.grad_norm(), expect) and st._one_group
    st._grad_norm, st._one_group = None, False  # the general path
    assert torch.equal(st.grad_norm(), expect)


def test_bench_memory_counter_sees_step_allocations():
    """scripts/bench_mem.py (the benchmark's CPU peak-memory counter) counts what a block
    allocates and frees: a forward+backward of a doubled batch peaks higher than of one batch."""
    scripts_importable()
    from bench_mem import PeakTensorMemory

    with PeakTensorMemory() as pk:
        a = torch.empty(1000)
        del a
        b = torch.empty(500)
    assert pk.peak == 4000 and pk.current == 2000
    del b
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    peaks = []
    for n in (64, 128):
        x = torch.randn(n, 64)
        with PeakTensorMemory() as pk:
            model(x).sum().backward()
        peaks.append(pk.peak)
        model.zero_grad(set_to_none=True)
    assert peaks[1] > peaks[0] > 256 * 64 * 4  # at least the first layer's weight gradient


def test_bench_arms_train_on_the_engines_batches(tmp_path):
    """scripts/hand_loop.engine_order (the row order every benchmark arm trains on) is the
    engine's own: the batches of runner's IndexBatcher, epoch after epoch, bucketed or not."""
    scripts_importable()
    from runner.data.text import TrimPadding

    from hand_loop import engine_order

    split = {
        "x": torch.randint(1, 9, (90, 16)),
        "mask": torch.ones(90, 16, dtype=torch.long),
        "y": torch.arange(90),
    }
    split["mask"][::3, 5:] = 0
    for bucket in (False, True):
        data = dataclasses.make_dataclass("D", ["train", "collate"])(
            split, TrimPadding(bucket=bucket)
        )
        cfg = dataclasses.make_dataclass("C", ["trainer", "seed"])(
            dataclasses.make_dataclass("T", ["batch_size"])(20), 4
        )
        b = IndexBatcher(split, 20, seed=4, collate=data.collate)
        order = engine_order(cfg, data)
        for epoch in range(3):
            e, rows = next(order)
            assert e == epoch
            assert torch.equal(rows, torch.cat([x["y"] for x in b.epoch(epoch)]))


def test_deterministic_steps_allocate_without_filling(tmp_path):
    """trainer.deterministic=true turns on torch's deterministic algorithms but not its fill of
    every new uninitialized tensor (a debugging aid that changes no correct op's result and cost
    a fill per allocation): a conv net's training steps make no fill under an allocation."""
    from torch.profiler import ProfilerActivity, profile

    saved = engine.torch_determinism()
    try:
        with profile(activities=[ProfilerActivity.CPU]) as p:
            s = train_run(
                [
                    "model=cnn1d",
                    "trainer.max_steps=3",
                    "trainer.eval_every=3",
                    "trainer.progress=false",
                    "trainer.deterministic=true",
                ],
                tmp_path / "r",
            )
        assert s["status"] == "completed" and torch.are_deterministic_algorithms_enabled()
        allocations = {"aten::empty", "aten::empty_strided", "aten::empty_like"}
        fills = [
            e
            for e in p.events()
            if e.name == "aten::fill_"
            and e.cpu_parent is not None
            and e.cpu_parent.name in allocations
        ]
        convs = [e for e in p.events() if e.name == "aten::convolution_backward"]
        assert convs and not fills
    finally:
        engine.torch_determinism(saved)


def test_bench_restores_torch_determinism_after_the_engine_arm():
    """The engine's deterministic mode is process-wide; the benchmark's next arm (hand loop,
    HF Trainer, Lightning) must run with torch's own defaults."""
    scripts_importable()
    import bench

    saved = engine.torch_determinism()  # earlier tests in this process may have changed it
    try:
        torch.use_deterministic_algorithms(False)  # torch's default, as the other arms expect
        before = engine.torch_determinism()
        bench.engine_run(["trainer.deterministic=true"], steps=4, warm=2)
        assert engine.torch_determinism() == before
    finally:
        engine.torch_determinism(saved)


def test_bench_clock_splits_a_step_into_model_and_framework_time(monkeypatch):
    """scripts/hand_loop.ModelClock (the benchmark's split of a step) counts the model's forward,
    the backward and AdamW's update as model time and the rest of the step as the framework's;
    a closure that runs forward and backward inside optimizer.step (Lightning's way) is not
    counted as the update, and a forward inside the backward counts once. A fake clock: forward
    5 s, backward 7 s, update 11 s, framework 3 + 1 s per step."""
    import importlib

    scripts_importable()
    from runner import build

    from hand_loop import ModelClock, stamp

    now = [0.0]

    class Tick(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            now[0] += 7
            if nested:  # a forward inside the backward (a gradient penalty's second pass)
                with torch.no_grad():
                    model(x)
            return g

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            now[0] += 5
            return Tick.apply(self.lin(x))

    adam_mod = importlib.import_module("torch.optim.adam")
    real_adam = adam_mod.adam

    def slow_adam(*a, **k):
        now[0] += 11
        return real_adam(*a, **k)

    monkeypatch.setattr(adam_mod, "adam", slow_adam)
    monkeypatch.setattr(build, "model", lambda *a, **k: Toy())
    before = (build.model, torch.autograd.backward, adam_mod.adam)
    x = torch.randn(4, 2)
    for closure_style, nested in ((False, False), (True, False), (False, True)):
        with ModelClock(now=lambda: now[0]) as clock:
            model = build.model()
            opt = torch.optim.AdamW(model.parameters())
            times = []
            for _ in range(4):
                now[0] += 3  # batching, bookkeeping

                def closure():
                    opt.zero_grad()
                    loss = model(x).sum()
                    now[0] += 1  # the framework's work between forward and backward
                    loss.backward()
                    return loss

                if closure_style:
                    opt.step(closure)
                else:
                    closure()
                    opt.step()
                stamp(times)
        model_ms = 1000.0 * (5 + 7 + 11 + 5 * nested)
        assert clock.split(times, skip=1) == {"model_ms": model_ms, "framework_ms": 4_000.0}
        assert (build.model, torch.autograd.backward, adam_mod.adam) == before  # restored
        assert ModelClock.active is None


def test_bench_script_reports_the_framework_split_and_precision(tmp_path):
    """scripts/bench.py as its users run it (tiny settings, the sections that need no peer
    framework): the report has the steady ratio, each arm's framework time per step next to the
    model's, the engine's saving over the hand loop, and the bf16/fp32 table."""
    import json

    scripts_importable()
    import bench

    saved = engine.torch_determinism()
    try:
        bench.main(
            [
                "--quick",
                "--sections",
                "overhead,precision",
                "--jobs",
                "mnist1d MLP",
                "--out",
                str(tmp_path / "b.md"),
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
    finally:
        engine.torch_determinism(saved)
    md = (tmp_path / "b.md").read_text()
    raw = json.loads((tmp_path / "b.json").read_text())
    row = raw["overhead"][0]
    assert row["job"] == "mnist1d MLP"
    for arm in ("engine", "hand"):
        assert row[f"{arm}_model_ms"] > 0 and row[f"{arm}_framework_ms"] > 0
    assert "Per-step time outside the model's forward, backward and update" in md
    assert f"{row['saved_vs_hand_ms']:+.2f} ± nan" in md  # one repetition: no interval
    prec = raw["precision"][0]
    assert prec["fp32_sps"] > 0 and prec["bf16_sps"] > 0 and "bf16 / fp32" in md
