"""Lion vs AdamW's own analysis for `tricks study` (the `analysis:` of study.yaml); the tweets
recipe (experiments/lion_vs_adamw_tweets) uses this file too.

The generic report has each optimizer's chosen point, its tuning curve and the verdict. This adds:
- the sensitivity to the learning rate: every tuning trial's val/acc against its lr, per
  optimizer (all trials share the lr points: the shared `search` key), as a figure and a table;
- the chosen lr of each optimizer and their ratio (the blog's claim: Lion's 3-10x lower);
- the optimizer-state memory, measured after one step on the study's own model (bytes of the
  tensors in `optimizer.state`): Lion keeps one buffer, AdamW two.

Interface (experiments/README.md): `analyse(study: dict, study_dir: Path) -> str`, study.json's
content in, markdown out; plots are written into study_dir.
"""

from __future__ import annotations

from pathlib import Path

from runner.study.analysis_kit import num, pyplot, run_path, save_figure, workloads

LR_KEY = "optimizer.lr"


def params_text(params: dict) -> str:
    return ", ".join(
        f"{k.removeprefix('optimizer.')} {v:g}" if num(v) else f"{k} {v}"
        for k, v in (params or {}).items()
    )


def trials_table(arms: dict, select: str) -> list[str]:
    lines = [f"| arm | lr | other parameters | {select} |", "|---|---|---|---|"]
    for name, rec in arms.items():
        if rec.get("equal_compute_of"):
            continue
        ts = [t for t in rec.get("trials", []) if num((t.get("params") or {}).get(LR_KEY))]
        for t in sorted(ts, key=lambda t: t["params"][LR_KEY]):
            rest = {k: v for k, v in t["params"].items() if k != LR_KEY}
            v = t.get("select_value")
            lines.append(
                f"| {name} | {t['params'][LR_KEY]:.3g} | {params_text(rest)} | "
                f"{f'{v:.4f}' if num(v) else 'failed'} |"
            )
    return lines


def lr_ratio(arms: dict) -> str:
    chosen = {a: (r.get("chosen") or {}).get(LR_KEY) for a, r in arms.items()}
    chosen = {a: v for a, v in chosen.items() if num(v)}
    if len(chosen) < 2:
        return "Chosen lr: fewer than two optimizers completed a trial."
    text = "; ".join(f"{a} {v:.3g}" for a, v in chosen.items())
    names = list(chosen)
    return (
        f"Chosen lr: {text} ({names[0]} / {names[1]} = {chosen[names[0]] / chosen[names[1]]:.2g}; "
        f"one tuning seed per trial, so a ratio within the grain of the search)."
    )


def plot(study_dir: Path, name: str | None, arms: dict, select: str) -> str | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for arm, rec in arms.items():
        if rec.get("equal_compute_of"):
            continue
        pts = sorted(
            ((t.get("params") or {}).get(LR_KEY), t.get("select_value"))
            for t in rec.get("trials", [])
            if num((t.get("params") or {}).get(LR_KEY)) and num(t.get("select_value"))
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=arm, alpha=0.8)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (tuning trials)")
    ax.set_ylabel(select)
    ax.grid(alpha=0.3)
    ax.legend()
    fname = f"sensitivity_{name or 'main'}.png"
    save_figure(fig, Path(study_dir) / fname)
    return fname


def optimizer_state_bytes(config_file: Path, datasets: dict | None = None) -> tuple[int, int]:
    """(parameter bytes, optimizer-state bytes) after one step of the run's resolved config.
    `datasets` caches the built dataset by its config (the arms of a workload share it)."""
    import torch
    from omegaconf import OmegaConf

    from runner import build
    from runner.optim.state import state_bytes

    cfg = OmegaConf.load(config_file)
    key = OmegaConf.to_yaml(cfg.dataset) + str(cfg.model.get("tokenizer"))
    datasets = {} if datasets is None else datasets
    data = datasets[key] if key in datasets else datasets.setdefault(key, build.data(cfg))
    model = build.model(cfg, data.info)
    opt = build.optimizer(cfg, model, fused_ok=False)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    pb = sum(p.numel() * p.element_size() for p in model.parameters())
    return pb, state_bytes(opt)


def memory_table(study_dir: Path, arms: dict) -> list[str]:
    lines = ["| arm | parameters | optimizer state | state / parameters |", "|---|---|---|---|"]
    datasets = {}
    for name, rec in arms.items():
        if rec.get("equal_compute_of"):
            continue
        dirs = ((rec.get("final") or {}).get("run_dirs") or []) + [
            t["run_dir"] for t in rec.get("trials", []) if t.get("run_dir")
        ]
        cfgs = [run_path(study_dir, d) / "config.yaml" for d in dirs]
        cfg = next((c for c in cfgs if c.is_file()), None)
        if cfg is None:
            lines.append(f"| {name} | n/a | n/a | no run config to build the model from |")
            continue
        try:
            pb, sb = optimizer_state_bytes(cfg, datasets)
        except Exception as e:  # noqa: BLE001 (a model that cannot be built here: say so, keep the rest)
            lines.append(
                f"| {name} | n/a | n/a | {type(e).__name__}: "
                f"{str(e).splitlines()[0][:80] if str(e) else ''} |"
            )
            continue
        lines.append(f"| {name} | {pb / 1e6:.3f} MB | {sb / 1e6:.3f} MB | {sb / pb:.2f}× |")
    return lines


def analyse(study: dict, study_dir: Path) -> str:
    study_dir = Path(study_dir)
    select = study.get("select", "val/acc")
    out = [
        (
            f"Sensitivity to the learning rate: every tuning trial's `{select}` (one tune seed "
            "each) against its lr; both optimizers were tried at the same lr points."
        )
    ]
    for name, arms in workloads(study).items():
        if name is not None:
            out.append(f"\n### {name}")
        out += ["", lr_ratio(arms), ""]
        fname = plot(study_dir, name, arms, select)
        if fname:
            out.append(f"![{select} against lr]({fname})\n")
        out += trials_table(arms, select)
        out += [
            "",
            (
                "Optimizer-state memory, measured after one step on this workload's model "
                "(bytes of the tensors in `optimizer.state`):"
            ),
            "",
        ] + memory_table(study_dir, arms)
    return "\n".join(out) + "\n"
