"""OUT/report.md of ``apps.demo``: tables and figures from the files its bundle runs wrote
(MetricsSaver CSVs, correlations.json, reconstruction_metrics.json, TensorBoard event files,
predicted masks and PNGs); nothing is read from the runs' logs."""

from __future__ import annotations

import glob
import os
import shutil
from typing import Dict, List, Mapping, Optional, Tuple

from apps.experiment import epoch_means, markdown_table, read_per_image, read_scalars, write_text

VALIDATION_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:olive")  # never the loss's blue
SET_NAMES = {"synth": "synthetic test split", "labeled": "real labelled test split"}


# ---- figures ---------------------------------------------------------------------------------


def plot_curves(runs: Mapping[str, Tuple[str, int]], path: str) -> str:
    """One panel per run {title: (TensorBoard log dir, epochs)}: the mean training loss per epoch
    (left axis) and the validation metrics (``val_*`` tags, right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angiokit.data.writers import atomic_path

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
    for ax, (title, (logdir, epochs)) in zip(axes[0], runs.items()):
        scalars = read_scalars(logdir)
        losses = epoch_means(scalars.get("train_loss") or scalars.get("loss") or {}, epochs)
        ax.plot(list(losses), list(losses.values()), "o-", color="tab:blue", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title, fontsize=9)
        metrics = {tag: values for tag, values in sorted(scalars.items()) if tag.startswith("val_")}
        lines = ax.get_lines()
        if metrics:
            twin = ax.twinx()
            for (tag, values), color in zip(metrics.items(), VALIDATION_COLORS):
                twin.plot(list(values), list(values.values()), "s--", color=color, label=tag)
            twin.set_ylabel("validation")
            lines += twin.get_lines()
        # one legend under the panel, where it hides no curve
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def segmentation_figure(datalist: str, predictions: str, evaluation: str, path: str) -> Optional[str]:
    """Per segmented test frame a row: the frame | the inference config's mask on it, coloured
    against the ground truth (green hits, red false positives, blue misses), titled with the
    frame's Dice from the evaluation. None where no frame was segmented."""
    from angiokit.data.datalist import read_entries
    from angiokit.data.readers import load_frame
    from angiokit.visualize import error_overlay, save_grid, to_display

    dice = {os.path.basename(k): v for k, v in read_per_image(evaluation).items()}
    tiles, titles = [], []
    for entry in read_entries(datalist, ["test"]):
        stem = os.path.splitext(os.path.basename(entry["image"]))[0]
        mask = os.path.join(predictions, f"{stem}_seg.png")
        if not os.path.isfile(mask):
            continue
        image = load_frame(entry["image"], frame=entry.get("frame", "max_contrast"))[0]
        label, pred = load_frame(entry["label"])[0] > 0, load_frame(mask)[0] > 0
        score = dice.get(os.path.basename(entry["image"]))
        tiles += [to_display(image), error_overlay(image, pred, label)]
        titles += [stem, "model" + (f": Dice {score:.2f}" if score is not None else "")]
    return save_grid(tiles, path, 2, titles, tile_inches=3.6, dpi=110, compact=True) if tiles else None


def stack_images(pngs: List[str], path: str) -> str:
    """PNGs one above the other (left-aligned, white where narrower) as one PNG."""
    from PIL import Image

    from angiokit.data.writers import atomic_path

    images = [Image.open(p).convert("RGB") for p in pngs]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="png", optimize=True)
    return path


# ---- sections --------------------------------------------------------------------------------


def reconstruction_section(exp, pretrained: Dict, figures: str) -> List[str]:
    lines = ["## 1. VasoMIM pre-training", ""]
    metrics = pretrained.get("reconstruction")
    if metrics:
        model, mean = metrics["model_masked_mse"], metrics["mean_predictor_masked_mse"]
        masking = metrics.get("masking", {})
        verdict = "below" if model["mean"] < mean["mean"] else "not below"
        lines += [
            f"Masked-patch reconstruction error on the {metrics['n']} held-out synthetic test frames (never pre-trained on), "
            f"{masking.get('mask_ratio', 0.5):.0%} of the patches masked{' (anatomy-guided)' if masking.get('guided') else ''}; "
            "MSE over the masked pixels, intensities scaled to [0, 1]; mean and sd over frames "
            "(`pretrain/eval_heldout/reconstruction_metrics.json`, written by the bundle's inference config):", "",
            *markdown_table(["predictor", "masked-patch MSE", "sd"], [
                ["VasoMIM (this run)", f"{model['mean']:.4f}", f"{model['sd']:.4f}"],
                ["mean of the frame's visible patches", f"{mean['mean']:.4f}", f"{mean['sd']:.4f}"],
            ]), "",
            f"The model's error is {model['mean'] / max(mean['mean'], 1e-12):.2f} times the mean predictor's ({verdict} it).", "",
        ]
    else:
        lines += ["(the pre-training bundle's inference config wrote no reconstruction_metrics.json)", ""]
    heldout = sorted(glob.glob(exp.path("pretrain", "eval_heldout", "*_reconstruction.png")))[:3]
    training = sorted(glob.glob(exp.path("pretrain", "eval", "reconstruction_epoch*.png")))
    target = os.path.join(figures, "reconstruction.png")
    if heldout:
        stack_images(heldout, target)
        lines += ["Held-out frames: original, masked, reconstruction (visible patches pasted back), the vessel prior that guides the masking:", "", "![reconstructions](figures/reconstruction.png)", ""]
    elif training:
        shutil.copy(training[-1], target)
        lines += [f"The last training batch ({os.path.basename(training[-1])}):", "", "![reconstructions](figures/reconstruction.png)", ""]
    return lines


def segmentation_section(segmentation: Dict, figures: str) -> List[str]:
    rows = [[SET_NAMES[name], r["model"]["n"], r["model"]["dice"], r["model"]["cldice"], r["frangi"]["dice"], r["frangi"]["cldice"]] for name, r in segmentation.items()]
    lines = ["## 2. Vessel segmentation", "", "Fine-tuned from the VasoMIM encoder; Frangi + Otsu (`configs/frangi.json`) needs no training. Both are scored by the bundle's evaluate config.", "",
             *markdown_table(["test set", "n", "model Dice", "model clDice", "Frangi Dice", "Frangi clDice"], rows), ""]
    for name, r in segmentation.items():
        figure = segmentation_figure(r["datalist"], r["predictions"], r["evaluation"], os.path.join(figures, f"segmentation_{name}.png"))
        if figure:
            lines += [f"{SET_NAMES[name]}, segmented by the inference config (green: hits, red: false positives, blue: misses):", "", f"![segmentation {name}](figures/{os.path.basename(figure)})", ""]
    return lines


def quality_section(scores: Dict, figures: str) -> List[str]:
    from angiokit.data.quality import METRICS

    c = scores["correlations"]
    rows = [[kind.upper()] + [c[kind][m] for m in METRICS] + [c[kind]["mean"]] for kind in ("srcc", "plcc")]
    lines = ["## 3. CAS-IQA on the synthetic quality benchmark", "", f"Test split, n = {c.get('n')}; proxy quality labels of the synthetic benchmark (see docs/results.md).", "",
             *markdown_table([""] + list(METRICS) + ["mean"], rows), ""]
    if os.path.exists(scores["scatter"]):
        shutil.copy(scores["scatter"], os.path.join(figures, "iqa_scatter.png"))
        lines += ["![predicted vs. target scores](figures/iqa_scatter.png)", ""]
    return lines


def curves_section(exp, cfg: Dict, figures: str) -> List[str]:
    runs = {
        "VasoMIM pre-training": (exp.path("pretrain", "eval"), cfg["pretrain_epochs"]),
        "vessel segmentation fine-tuning": (exp.path("segmentation", "eval"), cfg["finetune_epochs"]),
        "CAS-IQA training": (exp.path("quality", "cas_iqa", "eval"), cfg["iqa_epochs"]),
    }
    runs = {title: run for title, run in runs.items() if glob.glob(os.path.join(run[0], "events.out.tfevents*"))}
    lines = ["## 4. Loss curves", ""]
    if runs:
        plot_curves(runs, os.path.join(figures, "loss_curves.png"))
        lines += ["Mean training loss per epoch (left axes) and validation metrics (right axes), read from the runs' TensorBoard event files:", "", "![loss curves](figures/loss_curves.png)", ""]
    return lines


def write_report(exp, cfg: Dict, device: str, pretrained: Dict, segmentation: Dict, scores: Dict, serve: str, seconds: float) -> str:
    from angiokit.networks import size_overrides

    figures = exp.path("figures")
    os.makedirs(figures, exist_ok=True)
    preset = size_overrides(cfg["width"], cfg["depth"]).get("preset")
    lines = [
        "# angiokit demo report", "",
        f"Device: {device}. Sizes: ViT width {cfg['width']}, {cfg['depth']} layers (preset `{preset}`), patch 16, {cfg['image_size']} px; "
        f"{cfg['synthetic']} synthetic {cfg['synth_size']} px frames; epochs: pre-training {cfg['pretrain_epochs']}, fine-tuning {cfg['finetune_epochs']}, "
        f"CAS-IQA {cfg['iqa_epochs']} on {cfg['iqa_cases']} benchmark cases. The shipped configs are ViT-B/16 at 224 px: pre-training names these sizes, "
        "fine-tuning adopts them from the encoder, and evaluation, inference and serving read them from the checkpoints.", "",
        f"This invocation: {seconds / 60:.1f} min. Steps run now: " + (", ".join(f"{k} {v:.0f} s" for k, v in exp.timings.items()) or "none (all resumed)") + ".", "",
        "Commands: each step's exact `python -m monai.bundle run ...` line heads its log in `logs/`.", "",
    ]
    lines += reconstruction_section(exp, pretrained, figures)
    lines += segmentation_section(segmentation, figures)
    lines += quality_section(scores, figures)
    lines += curves_section(exp, cfg, figures)
    lines += ["## 5. Serve the trained models", "", "To 3D Slicer / OHIF with MONAI Label (see docs/annotation.md); no size flags, the checkpoints carry them:", "", "```bash", serve, "```", ""]
    lines += ["## Where things are", "", f"- `{exp.out}/pretrain/models/encoder.pt`: the pre-trained encoder",
              f"- `{exp.out}/segmentation/models/model.pt`: the vessel segmenter; `{exp.out}/frangi/models/model.pt`: the Frangi + Otsu baseline",
              f"- `{exp.out}/quality/cas_iqa/models/model.pt`: the quality scorer", f"- `{exp.out}/logs/`: every step's command and output", ""]
    return write_text(exp.path("report.md"), "\n".join(lines))
