"""Box detection metrics for the stenosis detection bundle: COCO AP (MONAI's ``COCOMetric`` on
MONAI's ``matching_batch``), FROC recall at 1 and 10 false positives per image, percentile
bootstrap intervals over images, a paired difference of two detectors, a precision-recall figure,
and an ignite-compatible cumulative metric.

Conventions. One image's prediction is ``{"boxes": [N, 4], "scores": [N], "labels": [N]}``, its
ground truth ``{"boxes": [M, 4], "labels": [M]}`` (numpy arrays or torch tensors on any device; N
or M may be 0). Boxes are 2-D ``(x1, y1, x2, y2)`` (MONAI's ``StandardMode`` for 2-D) in any
consistent pixel coordinates, width = x2 - x1 (no +1). Labels are 0-based indices into
``class_names``.

How MONAI scores (and so these numbers):

* Matching is COCO's: per image and class, detections (the ``max_detections`` best) in decreasing
  score take the unmatched ground-truth box of highest IoU at or above the threshold; a second
  detection of a found box is a false positive; IoU >= threshold counts. MONAI's ``box_iou``
  computes IoU in float32 (so an IoU meant to equal a threshold may fall either side of it).
* AP is COCO's 101-point interpolated AP: the precision envelope (max precision at any recall at
  or beyond) read at recall 0, 0.01, ..., 1 and averaged; 0 past the highest recall reached.
  ``mAP`` averages it over IoU 0.50:0.05:0.95.
* With several classes each number is the mean over the classes that have ground truth in the set
  (as pycocotools does; MONAI's overall ``COCOMetric`` key also averages in the -1 it gives absent
  classes, so the per-class keys are used here). A set without ground truth gives NaN.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou
from monai.metrics import Cumulative

from ..data.writers import atomic_path

__all__ = ["DetectionAPMetric", "bootstrap_detection", "detection_metrics", "paired_detection_difference", "plot_pr_curves"]

IOU_LIST = (0.5, 0.75)
IOU_RANGE = (0.5, 0.95, 0.05)
FROC_IOU = 0.5
FROC_FP_RATES = {"recall_at_1fp": 1.0, "recall_at_10fp": 10.0}
SCALAR_KEYS = ("mAP", "AP50", "AP75", "recall_at_1fp", "recall_at_10fp")


def detection_metrics(predictions: Sequence[Mapping], targets: Sequence[Mapping], class_names: Sequence[str] = ("stenosis",), max_detections: int = 100) -> dict:
    """COCO AP and FROC points of a detector over a set of images (lists of per-image dicts, in the
    same order; see the module doc).

    Returns floats ``mAP`` (IoU 0.50:0.05:0.95), ``AP50``, ``AP75``; ``recall_at_1fp`` and
    ``recall_at_10fp``: the fraction of ground-truth boxes found at IoU >= 0.5 at the lowest score
    threshold that lets through at most an average of 1 (10) false positives per image (the FROC
    sensitivity at those points; thresholds sit between distinct scores, so tied detections pass
    together); ``num_images``, ``num_boxes`` (ground-truth boxes); and ``pr_curve``:
    ``{"recall": [0, 0.01, ..., 1], "precision": [...]}`` at IoU 0.5, the interpolated precision
    COCO averages (its mean is ``AP50``). AP values are MONAI ``COCOMetric``'s."""
    return _MatchedSet(predictions, targets, class_names, max_detections).full_metrics()


def bootstrap_detection(
    predictions: Sequence[Mapping],
    targets: Sequence[Mapping],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    keys: Sequence[str] = ("AP50", "mAP"),
    class_names: Sequence[str] = ("stenosis",),
    max_detections: int = 100,
) -> Dict[str, Dict[str, float]]:
    """Percentile bootstrap intervals over images: key -> ``{"value", "low", "high"}``. ``value`` is
    ``detection_metrics`` on the full set; each resample draws the images with replacement and
    recomputes the metric on them (keys: any of ``mAP``, ``AP50``, ``AP75``, ``recall_at_1fp``,
    ``recall_at_10fp``). Resamples without ground truth (NaN) are left out of the percentiles."""
    matched = _MatchedSet(predictions, targets, class_names, max_detections)
    keys = _check_keys(keys)
    full = matched.full_metrics()
    samples = _resample_indices(len(matched), n_resamples, seed)
    values = np.array([[m[k] for k in keys] for m in map(matched.sample_metrics, samples)], dtype=float).reshape(len(samples), len(keys))
    out = {}
    for j, key in enumerate(keys):
        low, high = _percentile_interval(values[:, j], confidence)
        out[key] = {"value": float(full[key]), "low": low, "high": high}
    return out


def paired_detection_difference(
    predictions_a: Sequence[Mapping],
    predictions_b: Sequence[Mapping],
    targets: Sequence[Mapping],
    key: str = "AP50",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    class_names: Sequence[str] = ("stenosis",),
    max_detections: int = 100,
) -> Dict[str, float]:
    """``key`` of detector A minus that of detector B on the same images: ``{"difference", "low",
    "high"}``, the interval a percentile bootstrap over images in which each resample scores both
    detectors on the same drawn images (the pairing kept)."""
    (key,) = _check_keys((key,))
    a = _MatchedSet(predictions_a, targets, class_names, max_detections)
    b = _MatchedSet(predictions_b, targets, class_names, max_detections)
    diffs = np.array([a.sample_metrics(i)[key] - b.sample_metrics(i)[key] for i in _resample_indices(len(a), n_resamples, seed)], dtype=float)
    low, high = _percentile_interval(diffs, confidence)
    return {"difference": float(a.full_metrics()[key] - b.full_metrics()[key]), "low": low, "high": high}


def plot_pr_curves(curves: Mapping[str, Mapping], path, title: Optional[str] = None) -> str:
    """One PNG with one precision-recall line per model, labelled with its AP50, written atomically.
    ``curves`` maps a model name to its ``pr_curve`` (``{"recall", "precision"}``) or to the whole
    ``detection_metrics`` result; AP50 is the result's ``AP50`` when given, else the curve's mean
    precision (which is AP50 for the 101-point curve ``detection_metrics`` returns)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.5), dpi=120)  # a bare Figure on the Agg canvas: no pyplot state, thread-safe
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, entry in curves.items():
        curve = entry.get("pr_curve", entry)
        recall, precision = np.asarray(curve["recall"], dtype=float), np.asarray(curve["precision"], dtype=float)
        ap50 = entry.get("AP50", float(precision.mean()) if precision.size else float("nan"))
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP50 {ap50:.3f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return str(path)


class DetectionAPMetric(Cumulative):
    """``detection_metrics`` accumulated over batches, for ``monai.handlers.IgniteMetricHandler``
    (MONAI's metrics take dense tensors; detections are per-image lists of varying length).

    ``metric(y_pred, y)`` takes one batch: lists of per-image prediction / ground-truth dicts (or
    one dict each); they are moved to host numpy at once. ``aggregate()`` scores everything seen
    since ``reset()`` and returns ``key`` as a float tensor; the whole ``detection_metrics`` dict is
    then in ``self.results``. ``get_buffer()`` (the handler's ``metric_details``) gives per-image
    ``[num_gt_boxes, num_predictions]``.

    Distributed runs: ``aggregate()`` all-gathers the images of every rank (picklable numpy dicts,
    ``torch.distributed.all_gather_object``) so every rank gets the same numbers; images a
    ``DistributedSampler`` repeats to even out the ranks are counted twice, as in MONAI's metrics."""

    def __init__(self, key: str = "AP50", class_names: Sequence[str] = ("stenosis",), max_detections: int = 100) -> None:
        (self.key,) = _check_keys((key,))
        self.class_names = tuple(class_names)
        self.max_detections = int(max_detections)
        self.results: Optional[dict] = None
        super().__init__()

    def reset(self) -> None:
        self._predictions: list = []
        self._targets: list = []
        super().reset()

    def __call__(self, y_pred, y) -> None:
        preds = [y_pred] if isinstance(y_pred, Mapping) else list(y_pred)
        gts = [y] if isinstance(y, Mapping) else list(y)
        if len(preds) != len(gts):
            raise ValueError(f"a batch needs as many predictions as ground truths, got {len(preds)} and {len(gts)}")
        preds = [_prediction(p) for p in preds]
        gts = [_target(g) for g in gts]
        self._predictions.extend(preds)
        self._targets.extend(gts)
        if preds:
            self.extend(torch.tensor([[len(g["labels"]), len(p["labels"])] for p, g in zip(preds, gts)], dtype=torch.long))

    def aggregate(self) -> torch.Tensor:
        preds, gts = _all_gather(self._predictions), _all_gather(self._targets)
        self.results = detection_metrics(preds, gts, class_names=self.class_names, max_detections=self.max_detections)
        return torch.tensor(self.results[self.key], dtype=torch.float32)


# --------------------------------------------------------------------------------------------------


class _MatchedSet:
    """MONAI matching of every image done once, flattened per class, so that the metrics of any
    multiset of images (a bootstrap resample) come from array indexing. MONAI's ``COCOMetric`` on a
    resampled matched list re-concatenates it and smooths the curve in Python loops (~15 ms for 300
    images of 50 detections, so 1,000 resamples of two detectors take most of a minute); the fast
    path here (``sample_metrics``, ~3 ms) repeats its arithmetic vectorised, with the same numbers
    (tests/test_detection_metrics.py checks it against ``COCOMetric`` on resamples). FROC points
    are not in MONAI, so they are computed here from the same matches."""

    def __init__(self, predictions, targets, class_names, max_detections):
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be non-empty and unique, got {class_names!r}")
        predictions, targets = list(predictions), list(targets)
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} ground truths: one of each per image")
        preds = [_prediction(p) for p in predictions]
        gts = [_target(g) for g in targets]
        for item in preds + gts:
            if item["labels"].size and (item["labels"].min() < 0 or item["labels"].max() >= len(self.class_names)):
                raise ValueError(f"labels must be 0-based indices into class_names {self.class_names}, got {np.unique(item['labels']).tolist()}")
        self.max_detections = int(max_detections)
        self.num_images = len(gts)
        self.num_boxes = int(sum(len(g["labels"]) for g in gts))
        self.coco = COCOMetric(classes=list(self.class_names), iou_list=IOU_LIST, iou_range=IOU_RANGE, max_detection=(self.max_detections,), per_class=True, verbose=False)
        thresholds = np.asarray(self.coco.iou_thresholds)
        self.recall_thresholds = np.asarray(self.coco.recall_thresholds)
        self.t50, self.t75 = (int(np.flatnonzero(np.isclose(thresholds, t))[0]) for t in (0.5, 0.75))
        self.range_idx = np.asarray(self.coco.iou_range_idx)
        self.froc_idx = int(np.flatnonzero(np.isclose(thresholds, FROC_IOU))[0])
        self.matched = matching_batch(
            iou_fn=box_iou,
            iou_thresholds=self.coco.iou_thresholds,
            pred_boxes=[p["boxes"] for p in preds],
            pred_classes=[p["labels"] for p in preds],
            pred_scores=[p["scores"] for p in preds],
            gt_boxes=[g["boxes"] for g in gts],
            gt_classes=[g["labels"] for g in gts],
            max_detections=self.max_detections,
        )
        self.flat = [self._flatten(c, len(thresholds)) for c in range(len(self.class_names))]

    def __len__(self) -> int:
        return self.num_images

    def _flatten(self, cls: int, n_thresholds: int) -> dict:
        scores, tp, fp, lengths, num_gt = [], [], [], [], []
        for result in self.matched:
            r = result.get(cls)
            if r is None:
                lengths.append(0)
                num_gt.append(0)
                continue
            md = self.max_detections  # COCOMetric cuts again at its max_detection; the same here
            match, ignore = r["dtMatches"][:, :md].astype(bool), r["dtIgnore"][:, :md].astype(bool)
            scores.append(r["dtScores"][:md])
            tp.append(match & ~ignore)
            fp.append(~match & ~ignore)
            lengths.append(len(r["dtScores"][:md]))
            num_gt.append(int(np.count_nonzero(r["gtIgnore"] == 0)))
        lengths = np.asarray(lengths, dtype=np.int64)
        return {
            "scores": np.concatenate(scores) if scores else np.zeros(0),
            "tp": np.concatenate(tp, axis=1) if tp else np.zeros((n_thresholds, 0), dtype=bool),
            "fp": np.concatenate(fp, axis=1) if fp else np.zeros((n_thresholds, 0), dtype=bool),
            "start": np.cumsum(lengths) - lengths,
            "length": lengths,
            "num_gt": np.asarray(num_gt, dtype=np.int64),
        }

    def full_metrics(self) -> dict:
        """All of ``detection_metrics``: AP from MONAI's ``COCOMetric``, FROC and curve from the flat arrays."""
        values, _ = self.coco(self.matched)
        md = self.max_detections
        per_class = {
            "mAP": [values[f"{n}_mAP_IoU_{IOU_RANGE[0]:.2f}_{IOU_RANGE[1]:.2f}_{IOU_RANGE[2]:.2f}_MaxDet_{md}"] for n in self.class_names],
            "AP50": [values[f"{n}_AP_IoU_0.50_MaxDet_{md}"] for n in self.class_names],
            "AP75": [values[f"{n}_AP_IoU_0.75_MaxDet_{md}"] for n in self.class_names],
        }
        out = {k: _class_mean([v for v in vals if v >= 0]) for k, vals in per_class.items()}  # -1: class without ground truth
        stats = [self._class_stats(c, None) for c in range(len(self.class_names))]
        stats = [s for s in stats if s is not None]
        for k in FROC_FP_RATES:
            out[k] = _class_mean([s[k] for s in stats])
        out["num_images"] = float(self.num_images)
        out["num_boxes"] = float(self.num_boxes)
        if stats:
            precision = np.mean([s["precision"][self.t50] for s in stats], axis=0)
            out["pr_curve"] = {"recall": self.recall_thresholds.tolist(), "precision": precision.tolist()}
        else:
            out["pr_curve"] = {"recall": [], "precision": []}
        return out

    def sample_metrics(self, idx: np.ndarray) -> Dict[str, float]:
        """The scalar metrics of the images ``idx`` (repeats allowed), in that order."""
        stats = [self._class_stats(c, np.asarray(idx, dtype=np.int64)) for c in range(len(self.class_names))]
        stats = [s for s in stats if s is not None]
        out = {k: _class_mean([s[k] for s in stats]) for k in FROC_FP_RATES}
        if stats:
            precision = np.stack([s["precision"] for s in stats])  # [classes, thresholds, recall points]
            out["mAP"] = _class_mean(precision[:, self.range_idx].mean(axis=(1, 2)).tolist())
            out["AP50"] = _class_mean(precision[:, self.t50].mean(axis=1).tolist())
            out["AP75"] = _class_mean(precision[:, self.t75].mean(axis=1).tolist())
        else:
            out.update(mAP=float("nan"), AP50=float("nan"), AP75=float("nan"))
        return out

    def _class_stats(self, cls: int, idx: Optional[np.ndarray]) -> Optional[dict]:
        """COCO interpolated precision [thresholds, 101] and FROC recalls of one class over images
        ``idx`` (all when None); None when they hold no ground truth of the class."""
        flat = self.flat[cls]
        if idx is None:
            sel = np.arange(flat["scores"].size)
            num_gt, num_images = int(flat["num_gt"].sum()), self.num_images
        else:
            lengths = flat["length"][idx]
            total = int(lengths.sum())
            # detections of the drawn images, concatenated in draw order (as COCOMetric concatenates)
            sel = np.repeat(flat["start"][idx] - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
            num_gt, num_images = int(flat["num_gt"][idx].sum()), len(idx)
        if num_gt == 0:
            return None
        # COCOMetric._compute_statistics / _compute_stats_single_threshold, vectorised over thresholds
        order = np.argsort(-flat["scores"][sel], kind="mergesort")
        sel = sel[order]
        scores = flat["scores"][sel]
        tp = np.cumsum(flat["tp"][:, sel], axis=1).astype(np.float32)
        fp = np.cumsum(flat["fp"][:, sel], axis=1).astype(np.float32)
        rc = tp / num_gt
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.flip(np.maximum.accumulate(np.flip(pr, axis=1), axis=1), axis=1)  # precision envelope
        precision = np.zeros((tp.shape[0], self.recall_thresholds.size))
        for t in range(tp.shape[0]):
            inds = np.searchsorted(rc[t], self.recall_thresholds, side="left")
            ok = inds < rc.shape[1]  # recall never reached: precision 0
            precision[t, ok] = pr[t, inds[ok]]
        out = {"precision": precision}
        # FROC (not in MONAI): cut only between distinct scores, keep the last cut within the FP budget
        cut = np.ones(scores.size, dtype=bool)
        cut[:-1] = scores[:-1] != scores[1:]
        tp_f, fp_f = tp[self.froc_idx], fp[self.froc_idx]
        for k, rate in FROC_FP_RATES.items():
            ok = cut & (fp_f <= rate * num_images)
            out[k] = float(tp_f[ok].max() / num_gt) if ok.any() else 0.0
        return out


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _boxes(x) -> np.ndarray:
    boxes = _as_numpy(x, np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite")
    if np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ValueError("boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1")
    return boxes


def _prediction(p: Mapping) -> dict:
    boxes = _boxes(p["boxes"])
    scores = _as_numpy(p["scores"], np.float64).reshape(-1)
    labels = _as_numpy(p["labels"], np.int64).reshape(-1) if p.get("labels") is not None else np.zeros(len(boxes), dtype=np.int64)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"a prediction needs as many boxes, scores and labels: got {len(boxes)}, {len(scores)}, {len(labels)}")
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _target(g: Mapping) -> dict:
    boxes = _boxes(g["boxes"])
    labels = _as_numpy(g["labels"], np.int64).reshape(-1) if g.get("labels") is not None else np.zeros(len(boxes), dtype=np.int64)
    if len(boxes) != len(labels):
        raise ValueError(f"a ground truth needs as many boxes as labels: got {len(boxes)} and {len(labels)}")
    return {"boxes": boxes, "labels": labels}


def _class_mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _check_keys(keys) -> tuple:
    keys = tuple(keys)
    bad = [k for k in keys if k not in SCALAR_KEYS]
    if bad:
        raise ValueError(f"unknown detection metric {bad}; choose from {SCALAR_KEYS}")
    return keys


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    if n < 1:
        raise ValueError("bootstrapping needs at least one image")
    return np.random.default_rng(seed).integers(0, n, size=(int(n_resamples), n))


def _percentile_interval(values: np.ndarray, confidence: float):
    # by hand, not scipy.stats.bootstrap: the statistic is a set-level AP over matched detections
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _all_gather(items: list) -> list:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return list(items)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]
