"""Rank and linear correlation of predicted quality scores with the MOS, as a MONAI metric.

Buffers (predicted score, MOS) per image and metric over the epoch; ``aggregate`` returns the
SRCC, PLCC or KRCC (scipy.stats) of one metric, or their mean over the metrics.
``correlation_interval`` gives a case-bootstrap confidence interval for a reported correlation (on
779 synthetic test cases the guidewire SRCC's 95 % interval is about +- 0.02, wider than most steps
between models); ``severity_ceiling`` what a benchmark's proxy labels allow a scorer.
"""

from __future__ import annotations

from typing import Optional, Tuple

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


def correlation_interval(kind: str, pred: np.ndarray, mos: np.ndarray, confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> Tuple[float, float]:
    """Percentile bootstrap interval of ``correlation(kind, pred, mos)`` over the cases
    (``scipy.stats.bootstrap``, resampling (pred, MOS) pairs); deterministic by ``seed``."""
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    if len(pred) < 3:
        return (float("nan"), float("nan"))
    result = stats.bootstrap((pred, mos), lambda p, m: correlation(kind, p, m), paired=True, vectorized=False, n_resamples=int(resamples), confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def severity_ceiling(severity: np.ndarray, mos: np.ndarray, unseen_below: Optional[float] = None, repeats: int = 100, seed: int = 0) -> float:
    """The SRCC with the MOS of a scorer that knows the benchmark's severities (proxy labels).

    ``unseen_below`` None: the severities themselves, their ties kept (the usual ceiling; a third of
    the guidewires are intact and a sixth wholly lost, and the MOS within such a tie is rater
    noise). A number: a scorer that reads every severity above it exactly but cannot tell the
    cases at or below it apart (it puts them above the rest) and, like any learned regressor,
    never ties: tied cases in random order (mean over ``repeats`` orders, deterministic by
    ``seed``)."""
    severity, mos = np.asarray(severity, dtype=float), np.asarray(mos, dtype=float)
    if unseen_below is None:
        return correlation("srcc", -severity, mos)
    read = np.where(severity <= unseen_below, -1.0, severity)  # the unseen: one level, above all
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(repeats)):
        order = np.lexsort((rng.random(len(read)), -read))  # by the read severity, ties at random
        rank = np.empty(len(read))
        rank[order] = np.arange(len(read))
        values.append(correlation("srcc", rank, mos))
    return float(np.mean(values))


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
