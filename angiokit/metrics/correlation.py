"""Rank and linear correlation of predicted quality scores with the MOS, as a MONAI metric.

Buffers (predicted score, MOS) per image and metric over the epoch; ``aggregate`` returns the
SRCC, PLCC or KRCC (scipy.stats) of one metric, or their mean over the metrics.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from scipy import stats

KINDS = {"srcc": stats.spearmanr, "plcc": stats.pearsonr, "krcc": stats.kendalltau}


def expected_level(logits: torch.Tensor) -> torch.Tensor:
    """Level logits [..., 5] -> the expected level in 1-5 (as VLM-based scorers report)."""
    levels = torch.arange(1, 6, dtype=torch.float32, device=logits.device)
    return (logits.float().softmax(-1) * levels).sum(-1)


def predicted_scores(pred: torch.Tensor) -> torch.Tensor:
    """Logits [B, M, 5] (CAS-IQA) or scores [B, M] (regressors) -> scores [B, M]."""
    return expected_level(pred) if pred.ndim == 3 else pred.float()


def correlation(kind: str, pred: np.ndarray, mos: np.ndarray) -> float:
    if np.std(pred) == 0 or np.std(mos) == 0:
        return 0.0
    return float(KINDS[kind](pred, mos)[0])


class CorrelationMetric(CumulativeIterationMetric):
    def __init__(self, kind: str = "srcc", metric_index: Optional[int] = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        self.kind, self.metric_index = kind, metric_index

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor):  # type: ignore[override]
        """y_pred: logits [B, M, 5] or scores [B, M]; y: targets [B, M, 6] (MOS last) -> [B, 2M]."""
        return torch.cat([predicted_scores(y_pred).detach(), y[..., -1].float()], dim=1)

    def aggregate(self):
        data = self.get_buffer().cpu().numpy()
        m = data.shape[1] // 2
        pred, mos = data[:, :m], data[:, m:]
        indices = [self.metric_index] if self.metric_index is not None else range(m)
        return float(np.mean([correlation(self.kind, pred[:, i], mos[:, i]) for i in indices]))
