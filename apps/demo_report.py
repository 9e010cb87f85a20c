"""OUT/report.md of ``apps.demo``: tables from the bundle runs' outputs, figures from their PNGs
and logs (no figure is drawn from anything but what the runs wrote)."""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections import defaultdict
from typing import Dict, List

import numpy as np

TRAIN_LOSS = re.compile(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.eE+-]+|nan)")
VAL_METRIC = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")
SET_NAMES = {"synth": "synthetic test split", "labeled": "real labelled test split"}
LOSS_RUNS = {"pretrain_vasomim": "VasoMIM pre-training", "finetune_vessel_seg": "vessel segmentation fine-tuning", "train_cas_iqa": "CAS-IQA training"}


def epoch_losses(log: str) -> Dict[int, float]:
    """Mean training loss per epoch from a MONAI trainer's log."""
    per_epoch = defaultdict(list)
    for line in open(log, errors="replace"):
        m = TRAIN_LOSS.search(line)
        if m:
            per_epoch[int(m.group(1))].append(float(m.group(2)))
    return {e: float(np.mean(v)) for e, v in sorted(per_epoch.items())}


def validation_metrics(log: str) -> Dict[str, Dict[int, float]]:
    """{metric: {epoch: value}} from the "Epoch[e] Metrics -- name: value ..." lines."""
    out: Dict[str, Dict[int, float]] = defaultdict(dict)
    for line in open(log, errors="replace"):
        m = VAL_METRIC.search(line)
        if m:
            for name, value in re.findall(r"(\w+): ([0-9.eE+-]+)", m.group(2)):
                out[name][int(m.group(1))] = float(value)
    return dict(out)


def plot_curves(logs: Dict[str, str], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angiokit.data.writers import atomic_path

    fig, axes = plt.subplots(1, len(logs), figsize=(4.2 * len(logs), 3.2), squeeze=False)
    for ax, (title, log) in zip(axes[0], logs.items()):
        losses = epoch_losses(log)
        ax.plot(list(losses), list(losses.values()), "o-", color="tab:blue", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title, fontsize=9)
        metrics = validation_metrics(log)
        if metrics:
            twin = ax.twinx()
            for name, values in metrics.items():
                twin.plot(list(values), list(values.values()), "s--", label=name)
            twin.set_ylabel("validation")
            twin.legend(fontsize=7, loc="center right")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _grid_of(pngs: List[str], path: str) -> str:
    from angiokit.visualize import save_grid
    from PIL import Image

    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in pngs[:4]]
    return save_grid(tiles, path, ncols=len(tiles), titles=[os.path.basename(p).replace("_overlay.png", "") for p in pngs[:4]], tile_inches=2.4, compact=True)


def write_report(demo, device: str, segmentation: Dict, quality: Dict, seconds: float) -> str:
    from angiokit.data.quality import METRICS
    from angiokit.data.writers import atomic_path

    figures = demo.path("figures")
    os.makedirs(figures, exist_ok=True)
    cfg = demo.cfg
    lines = [
        "# angiokit demo report", "",
        f"Device: {device}. Sizes: ViT width {cfg['width']}, {cfg['depth']} layers, patch 16, {cfg['image_size']} px; "
        f"{cfg['synthetic']} synthetic {cfg['synth_size']} px frames; epochs: pre-training {cfg['pretrain_epochs']}, fine-tuning {cfg['finetune_epochs']}, "
        f"CAS-IQA {cfg['iqa_epochs']} on {cfg['iqa_cases']} benchmark cases. The shipped configs are ViT-B/16 at 224 px; these runs override sizes only.", "",
        f"This invocation: {seconds / 60:.1f} min. Stages run now: " + (", ".join(f"{k} {v:.0f} s" for k, v in demo.timings.items()) or "none (all resumed)") + ".", "",
        "Commands: each stage's exact `python -m monai.bundle run ...` line heads its log in `logs/`.", "",
    ]

    lines += ["## 1. VasoMIM pre-training", ""]
    reconstructions = sorted(glob.glob(demo.path("pretrain", "eval", "reconstruction_epoch*.png")))
    if reconstructions:
        shutil.copy(reconstructions[-1], os.path.join(figures, "reconstruction.png"))
        lines += [f"Anatomy-guided masking and reconstructions of the last training batch ({os.path.basename(reconstructions[-1])}; the vessel prior guides which patches are masked):", "", "![reconstructions](figures/reconstruction.png)", ""]
    else:
        lines += ["(no reconstruction grid was written)", ""]

    lines += ["## 2. Vessel segmentation", "", "Fine-tuned from the VasoMIM encoder; Frangi + Otsu needs no training.", "",
              "| test set | n | model Dice | model clDice | Frangi Dice | Frangi clDice |", "|---|---|---|---|---|---|"]
    for name, r in segmentation.items():
        lines.append(f"| {SET_NAMES[name]} | {r['model']['n']} | {r['model']['dice']:.3f} | {r['model']['cldice']:.3f} | {r['frangi']['dice']:.3f} | {r['frangi']['cldice']:.3f} |")
    lines.append("")
    for name, r in segmentation.items():
        if r["overlays"]:
            figure = _grid_of(r["overlays"], os.path.join(figures, f"segmentation_{name}.png"))
            lines += [f"{SET_NAMES[name]} (green: hits, red: false positives, blue: misses):", "", f"![segmentation {name}](figures/{os.path.basename(figure)})", ""]

    c = quality["correlations"]
    lines += ["## 3. CAS-IQA on the synthetic quality benchmark", "", f"Test split, n = {c.get('n')}; proxy quality labels of the synthetic benchmark (see docs/results.md).", "",
              "| | " + " | ".join(METRICS) + " | mean |", "|---" * (len(METRICS) + 2) + "|"]
    for kind in ("srcc", "plcc"):
        lines.append(f"| {kind.upper()} | " + " | ".join(f"{c[kind][m]:.3f}" for m in METRICS) + f" | {c[kind]['mean']:.3f} |")
    lines.append("")
    if os.path.exists(quality["scatter"]):
        shutil.copy(quality["scatter"], os.path.join(figures, "iqa_scatter.png"))
        lines += ["![predicted vs. target scores](figures/iqa_scatter.png)", ""]

    logs = {title: demo.path("logs", f"{step}.log") for step, title in LOSS_RUNS.items() if os.path.exists(demo.path("logs", f"{step}.log"))}
    lines += ["## 4. Loss curves", ""]
    if logs:
        plot_curves(logs, os.path.join(figures, "loss_curves.png"))
        lines += ["Mean training loss per epoch (left axes) and validation metrics (right axes), read from the runs' logs:", "", "![loss curves](figures/loss_curves.png)", ""]
    lines += ["## Where things are", "", f"- `{demo.out}/pretrain/models/encoder.pt`: the pre-trained encoder",
              f"- `{demo.out}/segmentation/models/model.pt`: the vessel segmenter (serve it: docs/annotation.md)",
              f"- `{demo.out}/quality/cas_iqa/models/model.pt`: the quality scorer", f"- `{demo.out}/logs/`: every stage's command and output", ""]
    path = demo.path("report.md")
    with atomic_path(path) as tmp:
        open(tmp, "w").write("\n".join(lines))
    return path
