"""The CAS-IQA training loss: level cross-entropy (or score MSE) plus a floored 1 - PLCC.

Shapes: ``pred`` [B, M, 5] level logits (``CASIQA``) or [B, M] scores (``ViTRegressor``);
``target`` [B, M, 6]: the raters' distribution over the five levels, then the MOS
(``angiokit.data.quality_dataset``'s items).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.correlation import expected_level


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, min_std: float = 0.25) -> torch.Tensor:
    """1 - Pearson correlation per metric over the batch, averaged: [B, M] inputs.

    The predictions' spread is floored at ``min_std`` (score units). Pearson correlation is
    scale-free, so its gradient grows as 1 / std(pred): with the near-constant scores of an
    untrained model it swamped the level cross-entropy, and the term was met by tiny batch-wise
    rank differences (training SRCC ~0.9 at score std ~0.005) that do not generalise. Below the
    floor the term is a bounded covariance reward; above it, the plain 1 - PLCC."""
    p, t = pred - pred.mean(0), target - target.mean(0)
    floor = min_std * math.sqrt(pred.shape[0])
    r = (p * t).sum(0) / (p.norm(dim=0).clamp_min(floor) * t.norm(dim=0)).clamp_min(1e-6)
    return (1.0 - r).mean()


class IQALoss(nn.Module):
    """For level logits [B, M, 5]: cross-entropy against the raters' distribution over the five
    levels; for score regressors [B, M]: mean squared error to the MOS. Plus ``plcc_weight`` x
    (1 - PLCC) of the scores. ``target`` [B, M, 6]: the distribution, then the MOS."""

    def __init__(self, plcc_weight: float = 0.0):
        super().__init__()
        self.plcc_weight = float(plcc_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distribution, mos = target[..., :5].float(), target[..., 5].float()
        if pred.ndim == 3:
            loss = -(distribution * F.log_softmax(pred.float(), -1)).sum(-1).mean()
            scores = expected_level(pred)  # CASIQA.scores: the expected level, 1-5
        else:
            scores = pred.float()
            loss = F.mse_loss(scores, mos)
        if self.plcc_weight > 0 and pred.shape[0] > 2:
            loss = loss + self.plcc_weight * plcc_loss(scores, mos)
        return loss
