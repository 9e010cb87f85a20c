"""Stenosis detection on ARCADE-S boxes (docs/results.md, "Stenosis detection"): four rows of the
xa_stenosis_det bundle, trained on the 920 training frames (80 validation frames choose the
checkpoint) and scored on the 300 test frames.

    python -m apps.stenosis_det --out runs/stenosis_det                  # CPU size (about 2 h of 2 cores to itself, after the encoders)
    python -m apps.stenosis_det --out runs/stenosis_det_quick --quick    # plumbing check, minutes

Rows: ResNet-FPN from scratch (MONAI's ResNet-18 + FPN), ViT from scratch, ViT from the plain-MAE
encoder, ViT from the VasoMIM encoder (both made by ``python -m apps.real_labels``: its
``pretrain/{mae,vasomim}/models/encoder.pt`` under ``--encoders``). Each step is a real bundle run,
skipped once finished (an interrupted run resumes).

Report (OUT/results.md, OUT/results.json, OUT/figures/): AP50, mAP, AP75, recall at 1 / 10 false
positives per image, each with a bootstrap interval over test frames; paired intervals of the
differences claimed; PR curves of the four rows; the best row's detections on test frames.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Dict, List, Mapping, Optional

import fire
import torch

from apps.experiment import SHARED, Experiment, choose_profile, markdown_table, vit_overrides, write_json, write_text

BUNDLE = "xa_stenosis_det"
PROFILES = {
    "quick": dict(image_size=64, epochs=1, batch_size=2, width=64, depth=2, pyramid_channels=32, resnet_depth=18, lr=0.0002, frames=8),
    # CPU size: 256 px (stenosis boxes: median 55 px at 512, so about 27 px here), 128-channel
    # pyramid and heads for both backbones (MONAI's 256 costs 3x on a CPU), ResNet-18
    "default": dict(image_size=256, epochs=16, batch_size=8, width=192, depth=6, pyramid_channels=128, resnet_depth=18, lr=0.0002, frames=None),
}
ROWS = ("resnet_fpn", "vit_scratch", "mae", "vasomim")
NAMES = {
    "resnet_fpn": "ResNet-18-FPN RetinaNet from scratch", "vit_scratch": "ViT RetinaNet (simple pyramid) from scratch",
    "mae": "ViT RetinaNet, MAE-pretrained", "vasomim": "ViT RetinaNet, VasoMIM-pretrained",
}
PAIRS = (("vasomim", "vit_scratch"), ("vasomim", "mae"), ("mae", "vit_scratch"), ("vasomim", "resnet_fpn"))
KEYS = ("AP50", "mAP", "AP75", "recall_at_1fp", "recall_at_10fp")


def prepare(exp: Experiment, frames: Optional[int]) -> str:
    """ARCADE-S boxes (``apps.prepare arcade_s_boxes``); ``frames``: a per-split cap (quick runs)."""
    from angiokit.data.adapters import prepare_arcade_s_boxes

    out = exp.path("data")
    datalist = os.path.join(out, "datalist.json")
    if not os.path.exists(datalist):
        prepare_arcade_s_boxes(os.path.join(SHARED, "arcade_stenosis_train"), os.path.join(SHARED, "arcade_stenosis_test"), out)
    if frames:
        doc = json.load(open(datalist))
        small = {k: (v[:frames] if isinstance(v, list) else v) for k, v in doc.items()}
        datalist = write_json(os.path.join(out, f"datalist_{frames}.json"), small)
    return datalist


def train(exp: Experiment, cfg: Dict, row: str, datalist: str, encoders: str, workers: int) -> str:
    """Train one row; its folder under OUT."""
    overrides = {
        "datalist": datalist, "image_size": cfg["image_size"], "max_epochs": cfg["epochs"], "warmup_epochs": 1, "val_interval": max(1, cfg["epochs"] // 4),
        "batch_size": cfg["batch_size"], "num_workers": workers, "network_def#pyramid_channels": cfg["pyramid_channels"],
        # the lr at which a short CPU schedule trains (the shipped base_lr scaled to batch 8 would be 1.3e-5)
        "lr": cfg["lr"],
    }
    configs = ["train"]
    if row == "resnet_fpn":
        configs.append("resnet_fpn")
        overrides["resnet_depth"] = cfg["resnet_depth"]
    elif row == "vit_scratch":
        overrides.update(vit_overrides(cfg["width"], cfg["depth"]))
    else:
        encoder = os.path.join(encoders, row, "models", "encoder.pt")
        if not os.path.exists(encoder):
            raise FileNotFoundError(f"{encoder}: no {row} encoder; make it with `python -m apps.real_labels --out {os.path.dirname(os.path.abspath(encoders))} --tasks dca1` (its pretrain stage) or give --encoders")
        overrides["pretrained_encoder"] = encoder
    exp.bundle(f"train_{row}", BUNDLE, configs, row, overrides, os.path.join("models", "model.pt"))
    return row


def evaluate(exp: Experiment, row: str, datalist: str, split: str = "test") -> Dict:
    """The evaluate config on ``split`` (the training split too: how far a row fits what it was
    trained on tells a budget limit from a generalisation one)."""
    out = exp.path(row, f"eval_{split}")
    configs = ["train"] + (["resnet_fpn"] if row == "resnet_fpn" else []) + ["evaluate"]
    overrides = {"datalist": datalist, "eval_split": split, "output_dir": out, "num_workers": 0, "n_resamples": 200 if split != "test" else 1000}
    exp.bundle(f"evaluate_{row}" + ("" if split == "test" else f"_{split}"), BUNDLE, configs, row, overrides, os.path.join(out, "metrics.json"))
    return json.load(open(os.path.join(out, "metrics.json")))


def learning_curves(exp: Experiment, rows) -> Dict[str, Dict[int, float]]:
    """Validation AP50 by epoch of each row (its TensorBoard log)."""
    from apps.experiment import read_scalars

    return {row: {int(k): float(v) for k, v in read_scalars(exp.path(row, "eval")).get("val_ap50", {}).items()} for row in rows}


def plot_learning_curves(curves: Mapping[str, Mapping[int, float]], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from angiokit.data.writers import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for row, curve in curves.items():
        if curve:
            epochs = sorted(curve)
            ax.plot(epochs, [curve[e] for e in epochs], marker="o", label=NAMES[row])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AP50 (80 frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def predictions(exp: Experiment, row: str):
    """The evaluation's per-frame predictions and ground truth, back as tensors (boxes x = column
    first, as written; the metrics do not depend on the axis order)."""
    records = json.load(open(exp.path(row, "eval_test", "predictions.json")))
    t = lambda v, dtype: torch.as_tensor(v, dtype=dtype).reshape(-1, 4) if dtype is torch.float32 else torch.as_tensor(v, dtype=dtype)  # noqa: E731
    preds = [{"boxes": t(r["boxes"], torch.float32), "scores": torch.as_tensor(r["scores"], dtype=torch.float32), "labels": t(r["labels"], torch.long)} for r in records]
    targets = [{"boxes": t(r["target_boxes"], torch.float32), "labels": t(r["target_labels"], torch.long)} for r in records]
    return [os.path.basename(r["image"]) for r in records], preds, targets


def ap_at_looser_iou(preds, targets, ious=(0.1, 0.3, 0.5)) -> Dict[str, float]:
    """AP at IoU 0.1 and 0.3 beside 0.5 (MONAI's COCOMetric): whether a detector finds the
    stenoses but draws their boxes otherwise than the annotators (a box-extent disagreement),
    or misses them."""
    import numpy as np
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou

    metric = COCOMetric(classes=["stenosis"], iou_list=ious, iou_range=(ious[0], ious[-1], ious[1] - ious[0]), max_detection=(100,))
    as_np = lambda t, dtype=np.float64: np.asarray(t, dtype=dtype)  # noqa: E731
    matched = matching_batch(
        iou_fn=box_iou, iou_thresholds=metric.iou_thresholds, max_detections=100,
        pred_boxes=[as_np(p["boxes"]).reshape(-1, 4) for p in preds], pred_classes=[as_np(p["labels"], int) for p in preds], pred_scores=[as_np(p["scores"]) for p in preds],
        gt_boxes=[as_np(t["boxes"]).reshape(-1, 4) for t in targets], gt_classes=[as_np(t["labels"], int) for t in targets],
    )
    scores = metric(matched)[0]
    return {f"AP@{iou:g}": float(scores[f"AP_IoU_{iou:.2f}_MaxDet_100"]) for iou in ious}


def box_sizes(datalist: str) -> Dict[str, Dict[str, float]]:
    """Per split: boxes, boxes per frame and the 10th / 50th / 90th percentile of sqrt(box area), px."""
    import numpy as np

    doc = json.load(open(datalist))
    out = {}
    for split in ("training", "validation", "test"):
        boxes = np.asarray([b for e in doc.get(split, []) for b in e["box"]], dtype=float).reshape(-1, 4)
        side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        p10, p50, p90 = np.percentile(side, [10, 50, 90]) if len(side) else (float("nan"),) * 3
        out[split] = {"frames": len(doc.get(split, [])), "boxes": len(boxes), "p10": float(p10), "median": float(p50), "p90": float(p90)}
    return out


def report(exp: Experiment, cfg: Dict, metrics: Mapping[str, Dict], fitted: Mapping[str, Dict], seconds: float, datalist: str = "") -> str:
    from angiokit.metrics import bootstrap_detection, detection_metrics, paired_detection_difference, plot_pr_curves

    loaded = {row: predictions(exp, row) for row in metrics}
    names = {row: v[0] for row, v in loaded.items()}
    if len({tuple(n) for n in names.values()}) > 1:
        raise ValueError("the rows were evaluated on different frames")
    rows, results, curves = [], {}, {}
    for row, (_, preds, targets) in loaded.items():
        full = detection_metrics(preds, targets)
        ci = bootstrap_detection(preds, targets, n_resamples=1000, seed=0, keys=KEYS)
        results[row] = {k: ci[k] for k in KEYS} | {"num_images": full["num_images"], "num_boxes": full["num_boxes"]}
        curves[NAMES[row]] = full["pr_curve"] | {"AP50": full["AP50"]}
        rows.append([NAMES[row]] + [f"{ci[k]['value']:.3f} [{ci[k]['low']:.3f}, {ci[k]['high']:.3f}]" for k in KEYS])
    lines = [f"# Stenosis detection on ARCADE-S boxes ({int(next(iter(results.values()))['num_images'])} test frames, "
             f"{int(next(iter(results.values()))['num_boxes'])} boxes)", "",
             f"Settings: {json.dumps(cfg)}; {seconds / 60:.0f} min in all.", ""]
    lines += markdown_table(["model"] + list(KEYS), rows)
    lines += ["", "95 % bootstrap intervals over test frames (1,000 resamples).", "", "## Paired differences (same frames resampled for both)", ""]
    diffs = {}
    for a, b in PAIRS:
        if a in loaded and b in loaded:
            for key in ("AP50", "mAP"):
                d = paired_detection_difference(loaded[a][1], loaded[b][1], loaded[a][2], key=key, n_resamples=1000, seed=0)
                diffs[f"{a}-{b}:{key}"] = d
                lines.append(f"- {NAMES[a]} - {NAMES[b]}, {key}: {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    curves_by_epoch = learning_curves(exp, loaded)
    looser = {r: ap_at_looser_iou(v[1], v[2]) for r, v in loaded.items()}
    lines += ["", "## What limits it: fit of the training frames, validation AP50 by epoch, box extents", ""]
    lines += markdown_table(["model", "AP50 on its training frames", "AP50 on test", "AP on test at IoU 0.1 / 0.3 / 0.5", "validation AP50 by epoch"],
                            [[NAMES[r], f"{fitted[r]['AP50']:.3f}" if r in fitted else "-", f"{results[r]['AP50']['value']:.3f}",
                              " / ".join(f"{v:.3f}" for v in looser[r].values()),
                              ", ".join(f"{e}: {v:.3f}" for e, v in sorted(curves_by_epoch[r].items()))] for r in loaded])
    sizes = box_sizes(datalist) if datalist else {}
    if sizes:
        lines += ["", "Box sizes (sqrt of the box area, px at 512):", ""]
        lines += markdown_table(["split", "frames", "boxes", "10th pct", "median", "90th pct"],
                                [[k, v["frames"], v["boxes"], f"{v['p10']:.1f}", f"{v['median']:.1f}", f"{v['p90']:.1f}"] for k, v in sizes.items()])
    os.makedirs(exp.path("figures"), exist_ok=True)
    plot_learning_curves(curves_by_epoch, exp.path("figures", "learning_curves.png"))
    plot_pr_curves(curves, exp.path("figures", "pr_curves.png"), title="ARCADE-S test: precision-recall at IoU 0.5")
    best = max(results, key=lambda r: results[r]["AP50"]["value"])
    figure = exp.path(best, "eval_test", "detections.png")
    if os.path.exists(figure):
        shutil.copyfile(figure, exp.path("figures", "detections_best.png"))
    lines += ["", f"Figures: figures/pr_curves.png; figures/learning_curves.png; figures/detections_best.png ({NAMES[best]}: true positives green, misses red, false positives yellow, score >= 0.3)."]
    write_json(exp.path("results.json"), {"settings": cfg, "rows": results, "differences": diffs, "best": best, "training_ap50": {r: fitted[r]["AP50"] for r in fitted}, "val_ap50_by_epoch": curves_by_epoch,
                                          "ap_at_looser_iou": looser, "box_sizes": sizes})
    return write_text(exp.path("results.md"), "\n".join(lines) + "\n")


def main(out: str = "runs/stenosis_det", quick: bool = False, rows: str = None, encoders: str = "runs/real_labels/pretrain", workers: int = 1, **sizes):
    """Run the four rows (``--rows resnet_fpn,vasomim`` for some), evaluate, report."""
    cfg = choose_profile(PROFILES, "quick" if quick else "default", sizes)
    chosen = [r.strip() for r in (rows.split(",") if isinstance(rows, str) else rows or ROWS) if r.strip()]
    unknown = sorted(set(chosen) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; the rows are {list(ROWS)}")
    exp = Experiment(out, ("data", "train and evaluate", "report"))
    exp.keep_settings(cfg)
    start = time.time()
    exp.stage("data")
    datalist = prepare(exp, cfg["frames"])
    exp.stage("train and evaluate")
    metrics, fitted = {}, {}
    for row in chosen:
        train(exp, cfg, row, datalist, encoders, workers)
        metrics[row] = evaluate(exp, row, datalist)
        print(f"  {row}: AP50 {metrics[row]['AP50']:.3f}, mAP {metrics[row]['mAP']:.3f}", flush=True)
    for row in chosen:
        fitted[row] = evaluate(exp, row, datalist, split="training")
    exp.stage("report")
    path = report(exp, cfg, metrics, fitted, time.time() - start, datalist)
    print(open(path).read())
    return path


if __name__ == "__main__":
    fire.Fire(main)
