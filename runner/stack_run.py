"""A stacked job: K runs that share a code path trained by the one engine as one stacked model
(runner.stack), each written to its own run directory as a solo run writes it.

`run_stack(jobs)` = setup (validate every member, check they share the code path, build the
stacked model from each member's own seeded initialisation) -> `engine.fit` on a `StackState`
-> each member's summary. `StackState` is the engine's State with the per-member readings:
loss, metrics and grad norm are [K] vectors; an evaluation gives each member's figures; a
member whose loss or gradients go non-finite is recorded failed at that step and frozen (its
weights and optimizer state zeroed, lr 0), the others go on; the stack fails only when every
member has. One checkpoint holds every member (`checkpoints/stack_last.pt` in the first member's
run dir, written atomically); each member keeps its own best.pt (solo names and shapes).

`group(jobs, k)` splits a sweep's jobs into stacks of up to k members sharing everything but
`STACK_FREE` keys; `tricks train -m ... --stack K` runs a sweep that way (runner.main defers the
jobs here).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

from runner import build, checkpoint, engine, main
from runner import device as devmod
from runner.config import (
    first_difference,
    flatten,
    to_container,
    validate,
)
from runner.engine import State
from runner.errors import ConfigError
from runner.facts import static_facts
from runner.gitinfo import source_commit
from runner.log import write_json_atomic
from runner.main import KillAtStep, _restore_signals
from runner.optim import stacked as so
from runner.stack import NotStackable, StackBatcher, StackedLoss, member_state_dict, stack_models

#: config keys members of one stack may differ in (everything else is the shared code path)
STACK_FREE = ("seed", "optimizer.lr", "optimizer.weight_decay", "resume", "trainer.progress")
#: optimizers with a stacked form: target -> (class path, keys it takes besides lr and wd)
STACKED_OPTIMIZERS = {
    "torch.optim.AdamW": ("StackedAdamW", ("betas", "eps")),
    "runner.optim.sgdw.SGDW": ("StackedSGDW", ("momentum", "dampening", "nesterov")),
    "runner.optim.lion.Lion": ("StackedLion", ("betas",)),
    "runner.optim.tiger.Tiger": ("StackedLion", ("beta",)),  # Lion with beta1 = beta2
}
#: optimizer keys that change nothing in the stacked form (kernel choice) or are handled apart
_OPT_IGNORED = ("_target_", "lr", "weight_decay", "fused", "foreach", "decay_bias_and_norm")
STACK_CKPT = "stack_last.pt"


@dataclass
class Member:
    """One run of a stack: its config, run dir and what the stack recorded for it."""

    cfg: object
    run_dir: Path
    config: dict
    index: int
    logger: object = None
    rows: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    improved_at: int = -1
    status: str = "running"
    error: str | None = None
    steps: int | None = None  # the step it failed at


@dataclass
class StackState(State):
    members: list = field(default_factory=list)
    generators: list = field(default_factory=list)

    @property
    def alive(self) -> list:
        return [m for m in self.members if m.status == "running"]

    def backward(self, loss: torch.Tensor) -> None:
        super().backward(loss.sum())  # Σₖ Lₖ: member k's gradient is its own dLₖ

    def norm(self, tensors: list) -> torch.Tensor:
        """Each member's L2 norm over its slices of `tensors`: [K]."""
        per = [torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors]
        return torch.linalg.vector_norm(torch.stack(per), dim=0)

    def grad_norm(self) -> torch.Tensor:
        """Each member's L2 norm over its own gradients: [K] (cached for the step)."""
        if self._grad_norm is None:
            self._grad_norm = self.norm(self.grads())
        return self._grad_norm

    def member_randn(self, shape, device) -> torch.Tensor:
        """[K, *shape] standard normal, member k's from its own generator: what torch.randn of
        `shape` gives its solo run (the tricks' random draws, e.g. input noise)."""
        f32 = torch.float32
        return torch.stack(
            [torch.randn(shape, generator=g, device=device, dtype=f32) for g in self.generators]
        )

    @property
    def lr(self) -> list:
        g = self.optimizer.param_groups[0]
        return (g["member_lr"] * g["lr"]).tolist()

    def read_member_acc(self) -> dict:
        """engine._read_acc per member: one host read, values as [K] lists."""
        self.count_hits()
        names = [k for k in self._acc if k != "__counts"]
        counts = self._acc.get("__counts")
        parts = [self._acc[k][0].double().reshape(-1) for k in names]
        if counts is not None:
            parts.append(counts[0].double().reshape(-1))
        vals = torch.cat(parts).tolist()
        k = len(self.members)
        out = {}
        if counts is not None:
            c = vals[len(names) * k :]
            width = len(c) // k
            per = [self.loss.metrics(c[i * width : (i + 1) * width]) for i in range(k)]
            out.update({f"train/{m}": [p[m] for p in per] for m in per[0]})
        for j, name in enumerate(names):
            n = max(self._acc[name][1], 1)
            v = [x / n for x in vals[j * k : (j + 1) * k]]
            key = "train/loss" if name == "__loss" else name
            if name != "__loss" and not ("/" in name or name in engine.TOP_LEVEL_METRICS):
                key = f"train/{name}"
            out[key] = v
        return out

    def check_members_finite(self, step_loss: torch.Tensor, full: bool) -> bool:
        """Members whose loss (and, with `full`, gradients) went non-finite this step fail;
        the rest go on. One host read."""
        bad = ~torch.isfinite(step_loss)
        if full:
            bad |= ~torch.isfinite(self.grad_norm())
        bad = bad.tolist()
        for m in self.alive:
            if bad[m.index]:
                self.fail_member(m, step_loss[m.index].item() / self.tc.accum_steps)
        if not self.alive:
            raise engine.TrainingFailed(self.members[0].error)
        return True

    @torch.no_grad()
    def fail_member(self, m: Member, loss: float) -> None:
        what = (
            f"non-finite loss ({loss})"
            if not math.isfinite(loss)
            else f"non-finite gradients (loss {loss:.6g})"
        )
        m.status, m.steps = "failed", self.step  # steps done, as a solo summary counts
        m.error = (
            f"{what} at step {self.step + 1} (member {m.index} of a stack of "
            f"{len(self.members)}; the others went on); lower optimizer.lr or clip gradients"
        )
        for p in self.params:  # frozen at zero: its NaNs reach nothing, it costs what it did
            p[m.index].zero_()
            if p.grad is not None:
                p.grad[m.index].zero_()
        self.optimizer.zero_member(m.index)

    def run_member_eval(self) -> dict:
        """engine.run_eval per member: val and test of the shared splits, each member's model
        (a trick's eval model, e.g. EMA, with the raw weights' figures under */raw/*)."""
        row = {}
        ev = self.eval_model()
        main = ev if ev is not None else self.raw_model
        for split in ("val", "test"):
            row.update({f"{split}/{k}": v for k, v in self._evaluate(main, split).items()})
            if ev is not None:
                raw = self._evaluate(self.raw_model, split)
                row.update({f"{split}/raw/{k}": v for k, v in raw.items()})
        return row

    @torch.no_grad()
    def _evaluate(self, model, split: str) -> dict:
        """engine.evaluate per member: {figure: [K] values}, one host read."""
        was = model.training
        model.eval()
        k = len(self.members)
        loss = torch.zeros(k, device=self.plan.device, dtype=torch.float64)
        counts, n = 0, 0
        for b in engine.eval_batches(getattr(self.data, split), self.cfg.eval_batch_size):
            xb = {key: v.expand(k, *v.shape) for key, v in b.items() if key != "y"}
            with self.autocast():
                logits = model(xb)
            loss += self.loss.sum(logits, b["y"]).double()
            counts = counts + self.loss.counts(logits, b["y"])
            n += len(b["y"])
        model.train(was)
        vals = torch.cat([loss, counts.double().reshape(-1)]).tolist()
        c = vals[k:]
        w = len(c) // k
        per = [self.loss.metrics(c[i * w : (i + 1) * w]) for i in range(k)]
        return {"loss": [v / max(n, 1) for v in vals[:k]]} | {
            f: [p[f] for p in per] for f in per[0]
        }


# -- setup -------------------------------------------------------------------------------------


def _trick_nodes(cfg) -> list:
    """(config key, trick target) of every trick a config selects."""
    return [(key, sub._target_) for key, _, sub in build.trick_nodes(cfg)]


def free_keys(cfg) -> tuple:
    """The keys members of one stack may differ in: STACK_FREE and the tricks' stack_keys (their
    strengths), read from the trick classes' facts without importing them."""

    nodes = _trick_nodes(cfg)
    keys = [f"{key}.{k}" for key, t in nodes for k in static_facts(t).get("stack_keys", ())]
    return (*STACK_FREE, *keys)


def check_shareable(cfgs: list) -> None:
    """NotStackable naming why unless every config shares the stacked code path."""

    first = to_container(cfgs[0])
    free = free_keys(cfgs[0])
    for c in cfgs[1:]:
        diff = first_difference(first, to_container(c), free)
        if diff is not None:
            raise NotStackable(f"{diff[0]} differs ({diff[1]!r} vs {diff[2]!r})")
    c = cfgs[0]
    t = c.trainer
    opt = c.optimizer
    if opt._target_ not in STACKED_OPTIMIZERS:
        raise NotStackable(f"optimizer {opt._target_} has no stacked form")
    allowed = set(_OPT_IGNORED) | set(STACKED_OPTIMIZERS[opt._target_][1])
    extra = [k for k in opt if k not in allowed and k != "decoupled_weight_decay"]
    if extra or opt.get("decoupled_weight_decay", True) is not True:
        raise NotStackable(f"optimizer.{(extra or ['decoupled_weight_decay'])[0]}")
    for key, target in _trick_nodes(c):
        if static_facts(target).get("stackable") is not True:
            raise NotStackable(f"{key} does not stack (its facts: stackable = False)")
    if t.on_nan != "stop" or t.compile or t.grad_checkpointing:
        raise NotStackable("trainer.on_nan=skip, compile or grad_checkpointing")
    if t.get("patience"):  # each member would stop at its own step: not in one stacked loop yet
        raise NotStackable("trainer.patience (early stopping is per run)")
    if c.dataset.get("labeled_fraction") or c.dataset.get("labeled_size"):
        raise NotStackable("semi-supervised data")


def _member_generator(device: str) -> torch.Generator:
    """A generator in the state the global one has now: the draws the solo run would make."""
    g = torch.Generator(device=device)
    cuda = device.startswith("cuda")
    g.set_state(torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state())
    return g


def _optimizer(cfgs: list, model: torch.nn.Module):

    node = cfgs[0].optimizer
    name, keys = STACKED_OPTIMIZERS[node._target_]
    dev = next(model.parameters()).device
    f64 = dict(device=dev, dtype=torch.float64)  # as the solo optimizers' Python floats
    lr = torch.tensor([float(c.optimizer.lr) for c in cfgs], **f64)
    wd = torch.tensor([float(c.optimizer.get("weight_decay", 0.0)) for c in cfgs], **f64)
    ps = [p for p in model.parameters() if p.requires_grad]
    if node.get("decay_bias_and_norm", False) or not wd.any():
        groups = [{"params": ps, "member_lr": lr, "member_wd": wd}]
    else:  # as build.param_groups: no decay on biases and norms (< 2 dims per member)
        decay = [p for p in ps if p.dim() - 1 >= 2]
        rest = [p for p in ps if p.dim() - 1 < 2]
        groups = [{"params": decay, "member_lr": lr, "member_wd": wd}]
        if rest:
            groups.append({"params": rest, "member_lr": lr, "member_wd": torch.zeros_like(wd)})
    kw = {k: (tuple(node[k]) if k == "betas" else node[k]) for k in keys if k in node}
    if "beta" in kw:
        kw["betas"] = (kw["beta"], kw.pop("beta"))
    return getattr(so, name)(groups, **kw)


def _tricks(cfgs: list, device) -> list:
    """Each member's tricks (the same classes in the same order: the configs differ only in
    stack keys), one stacked trick per position (Trick.stack)."""

    per_member = [build.tricks(c) for c in cfgs]
    return [type(ts[0]).stack(list(ts), device) for ts in zip(*per_member)]


def build_state(members: list[Member]) -> StackState:
    """Validate, check, build the stacked model (member k initialised as its solo run is) and
    the StackState. Raises ConfigError for bad input, NotStackable for a set that cannot stack."""

    cfgs = [m.cfg for m in members]
    for c in cfgs:
        validate(c)
    check_shareable(cfgs)
    tcfg = cfgs[0].trainer
    plan = devmod.plan(str(tcfg.device), str(tcfg.precision), compile=False)
    if plan.scaler:
        raise NotStackable("fp16 (one GradScaler for every member)")
    devmod.setup_backends(plan)
    data = build.data(cfgs[0]).to(plan.device, resident=True)
    loss = StackedLoss(build.loss(cfgs[0], data), len(cfgs))
    models, gens = [], []
    for c in cfgs:  # each member as its solo run: seed, then build (the init draws)
        engine.seed_everything(c.seed, tcfg.deterministic)
        models.append(build.model(c, data.info).to(plan.device))
        gens.append(_member_generator(plan.device))
    model = stack_models(models, gens)
    tricks = _tricks(cfgs, plan.device)
    opt = _optimizer(cfgs, model)
    for t in tricks:
        opt = t.wrap_optimizer(opt)
    batcher = StackBatcher(data.train, tcfg.batch_size, [c.seed for c in cfgs], tcfg.accum_steps)
    steps = engine.total_steps(tcfg, batcher.steps_per_epoch)
    state = StackState(
        cfg=tcfg,
        plan=plan,
        model=model,
        raw_model=model,
        optimizer=opt,
        scheduler=build.schedule(cfgs[0], opt, steps),
        tricks=tricks,
        data=data,
        batcher=batcher,
        total_steps=steps,
        seed=cfgs[0].seed,
        loss=loss,
        stacked=True,
        acc_shape=(len(cfgs),),
        batch_dim=1,
        members=members,
        generators=gens,
    )
    for t in tricks:
        t.setup(state)
    return state


# -- logging, best, checkpoints ---------------------------------------------------------------


class _MemberRows:
    """engine.fit's logger: each stacked row split into the members' rows (running members
    only), with the test figures where a solo run has them (trainer.eval_test=best)."""

    def __init__(self, state: StackState):
        self.state = state

    def log(self, row: dict) -> None:
        s = self.state
        best_only = s.tc.eval_test == "best" and s.step < s.total_steps
        for m in s.alive:
            r = {k: (v[m.index] if isinstance(v, list) else v) for k, v in row.items()}
            if best_only and m.improved_at != s.step:
                r = {k: v for k, v in r.items() if not k.startswith("test/")}
            m.rows.append(r)
            m.logger.log(r)


def _on_eval(state: StackState, row: dict) -> None:
    """Each member's best (its own select metric), best.pt in its run dir."""

    key = state.loss.select
    for m in state.alive:
        v = row[key][m.index]
        if m.best and key in m.best and v <= m.best[key]:
            continue
        m.best = {
            k: x[m.index]
            for k, x in row.items()
            if k.startswith(("val/", "test/")) and "/raw/" not in k
        }
        m.best["step"] = m.improved_at = state.step
        checkpoint.save_atomic(
            {
                "format": checkpoint.FORMAT,
                "model": member_state_dict(state.eval_model() or state.raw_model, m.index),
                "step": state.step,
                "val/acc": row["val/acc"][m.index],
            },
            m.run_dir / "checkpoints" / "best.pt",
        )


_MEMBER_KEYS = ("rows", "best", "improved_at", "status", "error", "steps")


def state_to_ckpt(state: StackState) -> dict:

    ck = checkpoint.state_to_ckpt(state, {"stack": [m.config for m in state.members]})
    ck["members"] = [{k: getattr(m, k) for k in _MEMBER_KEYS} for m in state.members]
    ck["generators"] = [g.get_state() for g in state.generators]
    return ck


def restore(state: StackState, ck: dict) -> None:

    checkpoint.restore(state, ck)
    dev = state.plan.device
    for g in state.optimizer.param_groups:
        g["member_lr"], g["member_wd"] = g["member_lr"].to(dev), g["member_wd"].to(dev)
    for m, saved in zip(state.members, ck["members"]):
        for k in _MEMBER_KEYS:
            setattr(m, k, saved[k])
    for g, s in zip(state.generators, ck["generators"]):
        g.set_state(s)


# -- one stacked job ---------------------------------------------------------------------------


def _resume(state: StackState) -> bool:
    """Restore the stack's checkpoint when the first member's dir holds one of these members."""

    path = state.members[0].run_dir / "checkpoints" / STACK_CKPT
    if not path.is_file():
        return False
    ck = checkpoint.load(path)
    dirs = [str(m.run_dir) for m in state.members]
    if ck.get("dirs") != dirs:
        return False  # another grouping of these runs (e.g. failed members re-run): fresh
    for old, m in zip(ck["config"]["stack"], state.members):
        checkpoint.check_compatible(old, m.config)
    restore(state, ck)
    return True


def _open(state: StackState, resumed: bool) -> None:
    """Each member's run dir as a solo run opens it: config.yaml, metrics.jsonl (on resume:
    the rows up to the checkpoint)."""

    for m in state.members:
        m.logger = build.loggers(m.cfg, m.run_dir)
    for m in state.members:
        m.run_dir.mkdir(parents=True, exist_ok=True)
        main.WROTE.add(str(m.run_dir))
        (m.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(m.cfg, resolve=True))
        m.logger.start(m.run_dir, m.config, rows=m.rows if resumed else None)


def _fit(state: StackState, callbacks) -> tuple[str, str | None]:
    """engine.fit under the signal handlers; (status of the running members, error)."""

    path = state.members[0].run_dir / "checkpoints" / STACK_CKPT
    dirs = [str(m.run_dir) for m in state.members]

    def save(s):
        checkpoint.save_atomic({**state_to_ckpt(s), "dirs": dirs}, path)

    kill = os.environ.get("TRICKS_TEST_KILL_AT_STEP")
    cbs = [*callbacks, *([KillAtStep(kill)] if kill else [])]
    old = engine.install_signal_handlers(state)
    try:
        engine.fit(state, _MemberRows(state), None, save, _on_eval, cbs)
        if state.stop_requested and state.step < state.total_steps:
            return "interrupted", f"stopped by {state.stop_requested} at step {state.step}"
        return "completed", None
    except engine.TrainingFailed:
        return "failed", None  # every member failed: each says why
    except KeyboardInterrupt:
        return "interrupted", f"interrupted at step {state.step}"
    except Exception as e:
        return "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        _restore_signals(old)


def _member_summary(state: StackState, m: Member, status: str, error) -> dict:
    spe = state.optimizer_steps_per_epoch
    steps = m.steps if m.steps is not None else state.step
    per_step = state.samples_seen / max(state.step, 1)
    view = SimpleNamespace(
        rows=m.rows,
        best=m.best,
        loss=state.loss,
        step=steps,
        epoch=steps // spe if m.steps is not None else state.epoch,
        optimizer_steps_per_epoch=spe,
        samples_seen=per_step * steps,
        train_seconds=state.train_seconds * steps / max(state.step, 1),
        plan=state.plan,
        nan_skips=0,
        total_steps=state.total_steps,
        stopped_early=None,  # a stack never stops early (trainer.patience runs solo)
    )
    s = engine.summary_figures(view)
    if m.status == "failed":
        status, error = "failed", m.error
    s["status"] = status
    if error:
        s["error"] = error
    first = str(state.members[0].run_dir)  # where the stack's checkpoint is
    s["stack"] = {"size": len(state.members), "index": m.index, "first": first}
    return s


def run_stack(jobs: list, callbacks=()) -> list[dict]:
    """Train `jobs` ([(cfg, run_dir)], sharing a code path) as one stacked model; returns each
    member's summary.json. ConfigError / NotStackable before anything is written."""

    t0 = time.perf_counter()
    members = [
        Member(cfg=c, run_dir=Path(d), config=to_container(c), index=i)
        for i, (c, d) in enumerate(jobs)
    ]
    state = build_state(members)
    resumed = _resume(state)
    commit = source_commit()
    _open(state, resumed)
    status, error = _fit(state, callbacks)
    out = []
    for m in members:
        s = _member_summary(state, m, status, error)
        s.update(wall_seconds=time.perf_counter() - t0, resumed=resumed)
        s["commit"], s["dirty"] = commit
        m.logger.finish(s)
        if s["status"] == "completed":
            checkpoint.prune(m.run_dir / "checkpoints", m.cfg.trainer.keep_checkpoints)
        main.report(s, m.run_dir)
        out.append(s)
    if status == "completed" and members[0].cfg.trainer.keep_checkpoints != "all":
        (members[0].run_dir / "checkpoints" / STACK_CKPT).unlink(missing_ok=True)
    return out


# -- a sweep's jobs in stacks -------------------------------------------------------------------


def group(jobs: list, size: int) -> list[list]:
    """Jobs [(cfg, run_dir)] in stacks of up to `size` that differ only in STACK_FREE keys, in
    sweep order; a job alone in its group is a stack of one (run solo)."""

    groups: dict = {}
    for job in jobs:
        flat = flatten(to_container(job[0]))
        keys = free_keys(job[0])
        shared = {
            k: v for k, v in flat.items() if not any(k == f or k.startswith(f + ".") for f in keys)
        }
        key = json.dumps(shared, sort_keys=True, default=str)
        groups.setdefault(key, []).append(job)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def _solo(cfg, run_dir: Path) -> int:
    """One job the solo way, with a sweep job's failure handling (runner.main.hydra_main)."""

    try:
        s = main.run(cfg, run_dir)
    except Exception as e:  # ConfigError: bad input; else a bug or the environment
        msg = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}".splitlines()[0]
        print(f"error: {msg}", file=sys.stderr)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "summary.json", {"status": "failed", "error": msg})
        s = {"status": "failed"}
    if s.get("status") != "completed":
        main.FAILED.append(str(run_dir))
    return 3 if s.get("status") == "interrupted" else 0


def run_jobs(jobs: list, size: int) -> int:
    """`tricks train -m ... --stack K`: the sweep's jobs, stacked where they share a code path,
    solo otherwise. Returns 3 when a job was interrupted (the sweep stops), else 0 (failed jobs
    are in runner.main.FAILED). A stack that cannot be built (NotStackable, or bad input a solo
    run then reports job by job) runs its jobs solo."""

    # a job with a solo checkpoint (run before without --stack) resumes solo, as it would
    solo = [[j] for j in jobs if j[0].get("resume")]
    for g in solo + group([j for j in jobs if not j[0].get("resume")], size):
        if len(g) > 1:
            try:
                summaries = run_stack(g)
            except Exception as e:  # noqa: BLE001 (any failure to stack: the jobs run solo)
                if main.debug() and not isinstance(e, NotStackable):
                    traceback.print_exc()
                why = f"note: {len(g)} jobs run solo: they cannot share a stack ({e})"
                print(why, file=sys.stderr)
            else:
                bad = [str(d) for (_, d), s in zip(g, summaries) if s["status"] != "completed"]
                main.FAILED.extend(bad)
                if any(s["status"] == "interrupted" for s in summaries):
                    return 3
                continue
        for cfg, run_dir in g:
            if _solo(cfg, Path(run_dir)) == 3:
                return 3
    return 0
