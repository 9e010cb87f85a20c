"""Stenosis F1 as the ARCADE challenge (MICCAI 2023; Popov et al., Sci Data 11:20, 2024) scores
its stenosis task, on binary masks, per image and as a MONAI ``CumulativeIterationMetric``.

What the challenge computes (its evaluation container, github.com/cmctec/ARCADE
``evaluation/evaluate_stenosis.py``; "F1 score will be calculated for each image, and final F1
score of a participant is the average of F1 Scores of all images", arcade.grand-challenge.org/tasks):
it is a region-level score built from pixel-level (area) F1s.

* Each predicted stenosis region P_i is compared with every ground-truth region G_j of the image
  by the area F1 of the pair, 2|P_i & G_j| / (|P_i| + |G_j|) (= the pair's Dice), and scores the
  best of them; a region touching no ground truth scores 0 (a false positive lowers the mean).
* If there are fewer predicted regions than ground-truth ones, each missing one adds a 0.
* The image's F1 is the mean of those scores; the data set's F1 is the mean over images.
  Matching is not one-to-one (two predictions may both match one stenosis), as in the original.

Differences from the original, which scores COCO polygons with shapely: regions here are the
8-connected components of the binary masks (what a mask -> polygon export per contour gives;
touching ground-truth polygons merge into one region) and areas are pixel counts. Frames without
ground-truth stenosis, on which the original fails (mean of an empty list): 1.0 when nothing is
predicted either, 0.0 when something is (the convention of ``vessel_metrics``).

Connected-component labelling has no torch operator, so it runs on the host (scipy, ~1 ms for a
512 x 512 frame); the result comes back as a tensor on the input's device.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .vessel_metrics import _binary, _PerImageMetric

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def stenosis_f1_score(pred, target) -> float:
    """ARCADE stenosis F1 of one image (see the module doc); ``pred`` / ``target`` are 2-D masks."""
    p, g = _binary(pred), _binary(target)
    if p.ndim != 2 or g.ndim != 2:
        raise ValueError(f"stenosis F1 expects 2-D masks, got {p.shape} and {g.shape}")
    pred_regions, n_pred = ndimage.label(p, structure=EIGHT_CONNECTED)
    true_regions, n_true = ndimage.label(g, structure=EIGHT_CONNECTED)
    if n_true == 0:
        return 1.0 if n_pred == 0 else 0.0
    if n_pred == 0:
        return 0.0
    # pixel counts of every (predicted region, true region) pair in one pass; row/column 0 = background
    pairs = np.bincount((pred_regions * (n_true + 1) + true_regions).ravel(), minlength=(n_pred + 1) * (n_true + 1)).reshape(n_pred + 1, n_true + 1)
    overlap = pairs[1:, 1:].astype(np.float64)
    pred_area, true_area = pairs[1:, :].sum(1).astype(np.float64), pairs[:, 1:].sum(0).astype(np.float64)
    pair_f1 = 2.0 * overlap / (pred_area[:, None] + true_area[None, :])
    scores = list(pair_f1.max(axis=1)) + [0.0] * max(0, n_true - n_pred)
    return float(np.mean(scores))


class StenosisF1Metric(_PerImageMetric):
    """ARCADE stenosis F1 per image and foreground class (see the module doc); [B, C, H, W]
    one-hot or single-channel binarised inputs, as ``VesselDiceMetric``."""

    score_fn = staticmethod(stenosis_f1_score)


def with_saved_metrics(handlers: Sequence, names: Iterable[str]) -> list:
    """``handlers`` with every ``monai.handlers.MetricsSaver`` among them set to write ``names``
    (summary and per-image details): lets a config overlay add a metric to the segmentation
    bundle's evaluation report without restating its handler list. Other handlers (and a
    handler list without a MetricsSaver, as in training) pass through unchanged."""
    from monai.handlers import MetricsSaver

    names = list(names)
    for handler in handlers:
        if isinstance(handler, MetricsSaver):
            handler.metrics, handler.metric_details = tuple(names), tuple(names)
    return list(handlers)


__all__ = ["StenosisF1Metric", "stenosis_f1_score", "with_saved_metrics"]
