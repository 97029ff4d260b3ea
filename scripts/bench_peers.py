"""The engine-overhead jobs through Hugging Face `Trainer` and PyTorch Lightning, for
scripts/bench.py (benchmark-only extras: `pip install -e .[bench]`).

Each runs the same model and data as `tricks train OVERRIDES` (built by runner.build), the same
batch size, fused AdamW with the config's hyperparameters, a cosine schedule without warm-up, no
gradient clipping, no evaluation, logging or checkpoints: the way a user of each framework would
write the job, with its default DataLoader over a map-style dataset of the same tensors (last
partial batch dropped; text batches trimmed to their longest row like the engine's dynamic
padding). One departure from the defaults: the DataLoader's sampler yields the engine's own row
order (hand_loop.engine_order), so every framework trains on the same batches; with text, whose
batch shapes vary with the rows drawn, a different shuffle would change the work per step.
Step end times come from each framework's own callback. On a GPU each runs on the engine's device
and precision (bf16 autocast where the engine plans it: HF `bf16=True`, Lightning
`precision="bf16-mixed"`; TF32 on; pinned DataLoader memory).
"""

from __future__ import annotations

import math
import tempfile
import time

import torch
import torch.nn.functional as F

from hand_loop import device_plan, stamp, step_result


class DictDataset(torch.utils.data.Dataset):
    def __init__(self, split: dict):
        self.split, self.n = split, len(split["y"])

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.split.items()}


class EngineOrder(torch.utils.data.Sampler):
    """The engine's row order as a DataLoader sampler (shuffle=False): epochs of
    hand_loop.engine_order, as many as `steps` batches need."""

    def __init__(self, cfg, data, steps: int):
        self.cfg, self.data, self.n = cfg, data, steps * cfg.trainer.batch_size

    def __len__(self):
        return self.n

    def __iter__(self):
        from hand_loop import engine_order

        left = self.n
        for _, rows in engine_order(self.cfg, self.data):
            take = rows[:left].tolist()
            yield from take
            left -= len(take)
            if left <= 0:
                return


def collator(multiple):
    def collate(items):
        b = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        if multiple and "mask" in b:
            full = b["mask"].shape[1]
            w = min(full, -(-int(b["mask"].sum(1).max()) // multiple) * multiple)
            b = {k: (v[:, :w] if v.ndim == 2 and v.shape[1] == full else v) for k, v in b.items()}
        return b

    return collate


def _setup(overrides):
    """Compose the config, then build data and model; returns the start time too: first-step
    times count from the composed config (framework imported), as the engine's do."""
    from runner import build
    from runner.config import compose

    cfg = compose(list(overrides))
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = build.data(cfg)
    model = build.model(cfg, data.info)
    return cfg, data, model, t0


def hf_run(overrides: list[str], steps: int, warm: int, on_first_step=None) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cfg, data, model, t0 = _setup(overrides)
    o, bs = cfg.optimizer, cfg.trainer.batch_size
    p = device_plan(cfg)
    gpu = p.device.startswith("cuda")

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, **batch):
            logits = self.m(batch)
            return {"loss": F.cross_entropy(logits, batch["y"]), "logits": logits}

    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamp(times)
            if len(times) == 1 and on_first_step is not None:
                on_first_step()

    sampler = EngineOrder(cfg, data, steps)

    class OrderedTrainer(Trainer):
        def _get_train_sampler(self, *a, **k):
            return sampler

    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(
            output_dir=d,
            per_device_train_batch_size=bs,
            max_steps=steps,
            learning_rate=o.lr,
            weight_decay=o.weight_decay,
            adam_beta1=o.betas[0],
            adam_beta2=o.betas[1],
            adam_epsilon=o.eps,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            optim="adamw_torch_fused",
            max_grad_norm=0.0,
            use_cpu=not gpu,
            bf16=p.precision == "bf16",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_drop_last=True,
            dataloader_pin_memory=gpu,
            remove_unused_columns=False,
            seed=cfg.seed,
        )
        tr = OrderedTrainer(
            model=Wrap(model),
            args=args,
            train_dataset=DictDataset(data.train),
            data_collator=collator(getattr(data.collate, "multiple", None)),
            callbacks=[Clock()],
        )
        tr.train()
    return step_result(times, bs, warm, t0)


def lightning_run(overrides: list[str], steps: int, warm: int, on_first_step=None) -> dict:
    import lightning as L

    cfg, data, model, t0 = _setup(overrides)
    o, bs = cfg.optimizer, cfg.trainer.batch_size
    p = device_plan(cfg)
    gpu = p.device.startswith("cuda")
    times = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.m = model

        def training_step(self, batch, i):
            return F.cross_entropy(self.m(batch), batch["y"])

        def configure_optimizers(self):
            opt = torch.optim.AdamW(
                self.parameters(),
                lr=o.lr,
                betas=tuple(o.betas),
                eps=o.eps,
                weight_decay=o.weight_decay,
                fused=True,
            )
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            stamp(times)
            if len(times) == 1 and on_first_step is not None:
                on_first_step()

    loader = torch.utils.data.DataLoader(
        DictDataset(data.train),
        batch_size=bs,
        sampler=EngineOrder(cfg, data, steps),
        drop_last=True,
        pin_memory=gpu,
        collate_fn=collator(getattr(data.collate, "multiple", None)),
    )
    with tempfile.TemporaryDirectory() as d:
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="gpu" if gpu else "cpu",
            devices=1,
            precision={"bf16": "bf16-mixed", "fp16": "16-mixed"}.get(p.precision, "32-true"),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[Clock()],
            default_root_dir=d,
        )
        trainer.fit(Module(), loader)
    return step_result(times, bs, warm, t0)
