"""Dice and hard clDice per image, and MONAI ``CumulativeIterationMetric`` wrappers.

clDice (Shit et al., CVPR 2021): with S(.) the morphological skeleton (``skimage.morphology.
skeletonize``), topology precision Tprec = |S(P) & G| / |S(P)|, topology sensitivity
Tsens = |S(G) & P| / |S(G)|, clDice = 2 Tprec Tsens / (Tprec + Tsens).

Empty masks: both empty -> 1.0 (nothing to find and nothing found); exactly one empty -> 0.0.
(MONAI's ``DiceMetric`` returns NaN for an empty ground truth by default; we score it, so a
frame without vessels still counts and false positives on it are punished.)
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction
from skimage.morphology import skeletonize


def _binary(x) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a > 0.5 if a.dtype != bool else a


def dice_score(pred, target) -> float:
    p, g = _binary(pred), _binary(target)
    total = p.sum() + g.sum()
    if total == 0:
        return 1.0
    return float(2.0 * (p & g).sum() / total)


def cldice_score(pred, target) -> float:
    p, g = _binary(pred), _binary(target)
    if p.ndim != 2 or g.ndim != 2:
        raise ValueError(f"clDice expects 2-D masks, got {p.shape} and {g.shape}")
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    sp, sg = skeletonize(p), skeletonize(g)
    t_prec = (sp & g).sum() / max(sp.sum(), 1)
    t_sens = (sg & p).sum() / max(sg.sum(), 1)
    if t_prec + t_sens == 0:
        return 0.0
    return float(2.0 * t_prec * t_sens / (t_prec + t_sens))


class _PerImageMetric(CumulativeIterationMetric):
    """Base: y_pred / y are [B, C, H, W] binarised (one-hot or single channel); one score per
    image and foreground channel -> [B, C'] (C' drops channel 0 when include_background=False
    and C > 1)."""

    score_fn = None

    def __init__(self, include_background: bool = False, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False):
        super().__init__()
        self.include_background, self.reduction, self.get_not_nans = include_background, reduction, get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor):  # type: ignore[override]
        if y_pred.shape != y.shape or y_pred.ndim != 4:
            raise ValueError(f"expected y_pred and y of the same [B, C, H, W] shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        start = 1 if (not self.include_background and y_pred.shape[1] > 1) else 0
        scores = [[type(self).score_fn(y_pred[b, c], y[b, c]) for c in range(start, y_pred.shape[1])] for b in range(y_pred.shape[0])]
        return torch.tensor(scores, dtype=torch.float32, device=y_pred.device)

    def aggregate(self, reduction: MetricReduction | str | None = None):
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data)}")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class VesselDiceMetric(_PerImageMetric):
    """Dice per image and class, empty-vs-empty = 1 (see module doc). Computed on the tensors'
    device with no host round trip: it is the segmentation trainer's per-iteration metric."""

    score_fn = staticmethod(dice_score)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor):  # type: ignore[override]
        if y_pred.shape != y.shape or y_pred.ndim != 4:
            raise ValueError(f"expected y_pred and y of the same [B, C, H, W] shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}")
        start = 1 if (not self.include_background and y_pred.shape[1] > 1) else 0
        p, g = y_pred[:, start:] > 0.5, y[:, start:] > 0.5
        overlap = (p & g).sum((2, 3)).float()
        total = (p.sum((2, 3)) + g.sum((2, 3))).float()
        return torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), torch.ones_like(total))


class ClDiceMetric(_PerImageMetric):
    """Hard clDice per image and class (skeletons by skimage), empty-vs-empty = 1."""

    score_fn = staticmethod(cldice_score)
