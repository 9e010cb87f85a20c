"""The stenosis detection bundle's engine parts, around MONAI's ``RetinaNetDetector``.

The bundle runs MONAI's stock ``SupervisedTrainer`` / ``SupervisedEvaluator``; what detection
needs is plugged into their slots:

- ``DetectionPrepareBatch``: a list of samples (``no_collation``: each frame has its own number of
  boxes) -> images (one tensor when all frames share a size, else a list) and the targets
  ``[{"boxes": [N, 4], "labels": [N]}]``, passed to the inferer as ``targets=``.
- ``DetectorInferer``: in training mode the detector's losses (a dict); in evaluation mode each
  frame resized to the network's size, detected, and its boxes scaled back to the frame, so
  metrics and outputs are in the input's pixels. A cine ([T, H, W]) gives one result per frame.
- ``DetectionLoss``: the weighted sum of the classification and box-regression losses.
- ``DetectionWriter`` (inference): boxes + scores as JSON per input (one list per frame of a
  cine) and an overlay PNG; ``DetectionReport`` (evaluation): COCO metrics with bootstrap
  intervals, the per-frame predictions, a PR curve and a figure of detections.

Boxes are in array-axis order ([row, column]) inside the engine (``angiokit.data.detection``);
the files written here use x = column, y = row, as the datalists do.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer

from ..data.detection import BOX_MODE, resize_frames, swap_box_axes
from ..data.writers import atomic_path
from ..visualize import save_grid, to_display

logger = logging.getLogger(__name__)



def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


class DetectionPrepareBatch(PrepareBatch):
    """A list of sample dicts -> ``(images, targets, (), {"targets": targets})`` on ``device``."""

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        samples = batchdata if isinstance(batchdata, (list, tuple)) else [batchdata]
        images = [_plain(s["image"]).to(device=device, non_blocking=non_blocking) for s in samples]
        if len({tuple(i.shape) for i in images}) == 1:
            images = torch.stack(images)
        targets = None
        if "box" in samples[0]:
            targets = [
                {"boxes": _plain(s["box"]).to(device=device, dtype=torch.float32, non_blocking=non_blocking), "labels": _plain(s["label"]).to(device=device, dtype=torch.long, non_blocking=non_blocking)}
                for s in samples
            ]
        return images, targets, (), {"targets": targets}


class DetectionLoss:
    """``classification_weight`` x the classification loss (MONAI's BCE over the sampled anchors) + the box-regression loss (smooth L1)."""

    def __init__(self, classification_weight: float = 1.0, cls_key: str = "classification", box_reg_key: str = "box_regression"):
        self.weight, self.cls_key, self.box_reg_key = float(classification_weight), cls_key, box_reg_key

    def __call__(self, losses: Dict[str, torch.Tensor], targets=None) -> torch.Tensor:
        return self.weight * losses[self.cls_key] + losses[self.box_reg_key]


class DetectorInferer(Inferer):
    """Runs MONAI's ``RetinaNetDetector`` with the engine's network (a DDP wrapper in multi-GPU
    training, so gradients synchronise).

    Training mode: returns the detector's loss dict for ``targets``. Evaluation mode: returns one
    prediction ``{"boxes", "scores", "labels"}`` per input frame (a list per input for a cine when
    ``cine``), boxes in the input's pixels. ``roi_size``: the network's square size (frames are
    resized to it; None: as they come). ``max_batch``: frames per forward pass."""

    def __init__(self, detector, roi_size: Optional[Union[int, Sequence[int]]] = None, max_batch: int = 8, cine: bool = False):
        super().__init__()
        self.detector = detector
        self.roi_size = None if roi_size is None else ((int(roi_size),) * 2 if isinstance(roi_size, int) else tuple(int(s) for s in roi_size))
        self.max_batch, self.cine = int(max_batch), bool(cine)

    def __call__(self, inputs, network, targets=None, **kwargs):
        self.detector.network = network
        if network.training:
            self.detector.train()
            return self.detector(inputs, targets)
        self.detector.eval()
        items = list(inputs) if isinstance(inputs, (list, tuple)) else list(inputs.unbind(0))
        results = []
        for item in items:
            frames = _plain(item).reshape(-1, 1, *item.shape[-2:])
            if frames.shape[0] > 1 and not self.cine:
                raise ValueError(f"an input of {frames.shape[0]} frames reached a single-frame detector inferer; set cine=True for cines")
            per_frame = [p for chunk in frames.split(self.max_batch) for p in self._detect(chunk)]
            results.append(per_frame if self.cine else per_frame[0])
        return results

    def _detect(self, frames: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        size = tuple(frames.shape[-2:])
        x = frames.float()
        if self.roi_size is not None and size != self.roi_size:
            x = resize_frames(x, self.roi_size)
        with torch.no_grad():
            outputs = self.detector(x)
        scale = torch.tensor([size[0] / x.shape[-2], size[1] / x.shape[-1]] * 2, device=x.device)
        d = self.detector
        return [{"boxes": o[d.target_box_key].float() * scale, "scores": o[d.pred_score_key].float(), "labels": o[d.target_label_key].long()} for o in outputs]


def _source_path(sample) -> str:
    meta = getattr(sample.get("image"), "meta", None) or {}
    name = meta.get("filename_or_obj", "")
    return name[0] if isinstance(name, (list, tuple)) else str(name)


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path)) or "frame"
    for suffix in (".nii.gz", ".png", ".jpg", ".jpeg", ".dcm", ".nii", ".bmp", ".tif", ".tiff"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def to_records(prediction: Dict[str, torch.Tensor], label_names: Dict[str, str]) -> Dict[str, list]:
    """One frame's prediction (array-axis order) -> JSON-ready boxes (x = column first), scores,
    labels and label names."""
    boxes = swap_box_axes(prediction["boxes"].detach().float().cpu()).numpy()
    labels = prediction["labels"].detach().cpu().numpy().astype(int).tolist()
    return {
        # rounded in float64: float32 values would print as 0.9819999933242798
        "boxes": np.round(boxes.astype(np.float64), 2).tolist(),
        "scores": np.round(prediction["scores"].detach().cpu().numpy().astype(np.float64), 4).tolist(),
        "labels": labels,
        "label_names": [label_names.get(str(v), str(v)) for v in labels],
    }


def draw_boxes(image: np.ndarray, boxes: Dict[str, np.ndarray], width: int = 2) -> np.ndarray:
    """Grey [H, W] frame -> RGB uint8 with boxes drawn: ``boxes`` maps an RGB colour name
    ("green", "red", "yellow", "cyan") to [N, 4] array-axis boxes."""
    colours = {"green": (40, 220, 60), "red": (240, 40, 40), "yellow": (250, 210, 30), "cyan": (40, 200, 240)}
    grey = to_display(image)
    rgb = np.repeat(grey[..., None], 3, axis=-1).copy()
    h, w = grey.shape
    for name, arr in boxes.items():
        colour = colours[name]
        for r1, c1, r2, c2 in np.asarray(arr, dtype=float).reshape(-1, 4):
            r1, r2 = int(np.clip(np.floor(r1), 0, h - 1)), int(np.clip(np.ceil(r2) - 1, 0, h - 1))
            c1, c2 = int(np.clip(np.floor(c1), 0, w - 1)), int(np.clip(np.ceil(c2) - 1, 0, w - 1))
            for t in range(width):
                rgb[min(r1 + t, h - 1), c1 : c2 + 1] = colour
                rgb[max(r2 - t, 0), c1 : c2 + 1] = colour
                rgb[r1 : r2 + 1, min(c1 + t, w - 1)] = colour
                rgb[r1 : r2 + 1, max(c2 - t, 0)] = colour
    return rgb


def write_rgb_png(path: str, rgb: np.ndarray) -> str:
    """An RGB uint8 [H, W, 3] image as PNG, written atomically (``write_png`` writes grey frames)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def _write_json(path: str, doc) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
    return path


class DetectionWriter:
    """Inference: for each input, ``<stem>.json`` = ``{"image", "box_mode", "frames": [{"frame", "boxes",
    "scores", "labels", "label_names"}]}`` (one entry per frame of a cine) and ``<stem>_overlay.png``
    (the frame with the most confident box, boxes at or above ``overlay_threshold`` drawn with
    their scores' order: cyan). Written atomically."""

    def __init__(self, output_dir: str, label_names: Optional[Dict[str, str]] = None, overlay: bool = True, overlay_threshold: float = 0.3):
        self.output_dir, self.label_names = output_dir, {str(k): v for k, v in (label_names or {"0": "stenosis"}).items()}
        self.overlay, self.overlay_threshold = bool(overlay), float(overlay_threshold)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        samples = engine.state.batch if isinstance(engine.state.batch, (list, tuple)) else [engine.state.batch]
        for sample, prediction in zip(samples, engine.state.output["pred"]):
            frames = prediction if isinstance(prediction, list) else [prediction]
            source = _source_path(sample)
            stem = _stem(source)
            doc = {"image": source, "box_mode": BOX_MODE, "frames": [{"frame": i, **to_records(p, self.label_names)} for i, p in enumerate(frames)]}
            _write_json(os.path.join(self.output_dir, f"{stem}.json"), doc)
            if self.overlay:
                image = _plain(sample["image"]).reshape(-1, *sample["image"].shape[-2:])
                best = max(range(len(frames)), key=lambda i: float(frames[i]["scores"].max()) if len(frames[i]["scores"]) else -1.0)
                keep = frames[best]["scores"] >= self.overlay_threshold
                rgb = draw_boxes(image[best].float().cpu().numpy(), {"cyan": frames[best]["boxes"][keep].detach().cpu().numpy()})
                write_rgb_png(os.path.join(self.output_dir, f"{stem}_overlay.png"), rgb)
            logger.info(f"{source}: {sum(len(f['scores']) for f in frames)} boxes over {len(frames)} frame(s) -> {os.path.join(self.output_dir, stem + '.json')}")


def match_at_iou(pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray, iou: float = 0.5):
    """Greedy matching by score (COCO's rule) -> (true-positive flags of the predictions, found
    flags of the ground truth), for the figure."""
    from monai.data.box_utils import box_iou

    tp = np.zeros(len(pred_boxes), dtype=bool)
    found = np.zeros(len(gt_boxes), dtype=bool)
    if len(pred_boxes) and len(gt_boxes):
        overlaps = np.asarray(box_iou(np.asarray(pred_boxes, dtype=np.float64), np.asarray(gt_boxes, dtype=np.float64)))
        for i in np.argsort(-np.asarray(pred_scores), kind="stable"):
            candidates = np.where(~found & (overlaps[i] >= iou))[0]
            if len(candidates):
                j = candidates[np.argmax(overlaps[i, candidates])]
                found[j], tp[i] = True, True
    return tp, found


class DetectionReport:
    """Evaluation: collects every frame's predictions and ground truth, then at the end writes to
    ``output_dir``: ``metrics.json`` (``angiokit.metrics.detection_metrics`` + bootstrap intervals of
    AP50 and mAP over frames), ``predictions.json`` (per frame: file, boxes, scores, ground truth;
    x = column first), ``pr_curve.png`` and ``detections.png`` (``figure_frames`` frames: true
    positives green, misses red, false positives yellow, at ``figure_threshold`` - a display
    setting, not a tuned operating point)."""

    def __init__(self, output_dir: str, label_names: Optional[Dict[str, str]] = None, n_resamples: int = 1000, seed: int = 0, figure_frames: int = 8, figure_threshold: float = 0.3, name: str = "model"):
        self.output_dir, self.label_names = output_dir, {str(k): v for k, v in (label_names or {"0": "stenosis"}).items()}
        self.n_resamples, self.seed, self.figure_frames, self.figure_threshold, self.name = int(n_resamples), int(seed), int(figure_frames), float(figure_threshold), name
        self.records: List[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.records.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        samples = engine.state.batch if isinstance(engine.state.batch, (list, tuple)) else [engine.state.batch]
        out = engine.state.output
        for sample, pred, target in zip(samples, out["pred"], out["label"]):
            cpu = lambda d: {k: v.detach().cpu() for k, v in d.items()}  # noqa: E731
            self.records.append({"image": _source_path(sample), "pred": cpu(pred), "target": cpu(target)})

    def write(self, engine: Engine) -> Dict[str, float]:
        from ..metrics.detection import bootstrap_detection, detection_metrics, plot_pr_curves

        os.makedirs(self.output_dir, exist_ok=True)
        preds = [r["pred"] for r in self.records]
        targets = [r["target"] for r in self.records]
        metrics = detection_metrics(preds, targets, class_names=[self.label_names[k] for k in sorted(self.label_names, key=int)])
        intervals = bootstrap_detection(preds, targets, n_resamples=self.n_resamples, seed=self.seed)
        curve = metrics.pop("pr_curve")
        summary = {k: v for k, v in metrics.items()} | {f"{k}_interval": [v["low"], v["high"]] for k, v in intervals.items()}
        _write_json(os.path.join(self.output_dir, "metrics.json"), summary | {"pr_curve": curve, "n_resamples": self.n_resamples, "box_mode": BOX_MODE})
        _write_json(
            os.path.join(self.output_dir, "predictions.json"),
            [{"image": r["image"], **to_records(r["pred"], self.label_names), "target_boxes": swap_box_axes(r["target"]["boxes"]).numpy().astype(np.float64).round(2).tolist(), "target_labels": r["target"]["labels"].numpy().tolist()} for r in self.records],
        )
        plot_pr_curves({self.name: curve | {"AP50": metrics["AP50"]}}, os.path.join(self.output_dir, "pr_curve.png"), title="Precision-recall at IoU 0.5")
        self.figure(os.path.join(self.output_dir, "detections.png"))
        logger.info("detection metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if isinstance(v, float)))
        engine.state.metrics.update({f"det_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        return summary

    def figure(self, path: str) -> Optional[str]:
        """Frames with ground truth first (most boxes), then the rest; TP green, miss red, FP yellow."""
        chosen = sorted(range(len(self.records)), key=lambda i: -len(self.records[i]["target"]["boxes"]))[: self.figure_frames]
        tiles, titles = [], []
        for i in chosen:
            r = self.records[i]
            keep = r["pred"]["scores"].numpy() >= self.figure_threshold
            boxes, scores = r["pred"]["boxes"].numpy()[keep], r["pred"]["scores"].numpy()[keep]
            gt = r["target"]["boxes"].numpy()
            tp, found = match_at_iou(boxes, scores, gt)
            from ..data.pretrain import LoadAngiogramd

            try:
                image = LoadAngiogramd("image")({"image": r["image"]})["image"][0].numpy()
            except Exception:  # a frame that cannot be re-read (moved) is left out of the figure
                continue
            tiles.append(draw_boxes(image, {"red": gt[~found], "green": boxes[tp], "yellow": boxes[~tp]}))
            titles.append(f"{_stem(r['image'])}: TP {int(tp.sum())}, miss {int((~found).sum())}, FP {int((~tp).sum())}")
        if not tiles:
            return None
        return save_grid(tiles, path, ncols=min(4, len(tiles)), titles=titles, tile_inches=3.0, compact=True)


__all__ = ["BOX_MODE", "DetectionLoss", "DetectionPrepareBatch", "DetectionReport", "DetectionWriter", "DetectorInferer", "draw_boxes", "match_at_iou", "to_records"]
