"""Paired comparison of two methods scored on the same test frames: the mean per-frame difference
and its percentile bootstrap interval (frames resampled, the pairing kept; ``scipy.stats.bootstrap``)."""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np
from scipy import stats


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], confidence: float = 0.95, resamples: int = 10000, seed: int = 0) -> Dict[str, float]:
    """``a`` minus ``b`` over the frames both scored (dicts frame -> score): mean difference, its
    interval, and the number of frames. Raises when they share fewer than two frames (the two
    were not scored on the same test set)."""
    frames = sorted(set(a) & set(b))
    if len(frames) < 2:
        raise ValueError(f"a paired difference needs frames scored by both methods; they share {len(frames)} (of {len(a)} and {len(b)})")
    diff = np.array([a[f] - b[f] for f in frames], dtype=float)
    if np.all(diff == diff[0]):  # no spread: the bootstrap distribution is a point
        low = high = float(diff[0])
    else:
        ci = stats.bootstrap((diff,), np.mean, confidence_level=confidence, n_resamples=int(resamples), method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {"mean": float(diff.mean()), "low": low, "high": high, "n": len(frames)}
