"""What the quality benchmark rates, and on what scale: three clinical metrics, five levels, and a
single score as a distribution over those levels."""

from __future__ import annotations

import numpy as np

METRICS = ("guidewire", "branch", "artifact")
METRIC_NAMES = {"guidewire": "guidewire visibility", "branch": "branch discernibility", "artifact": "artifact interference"}
LEVELS = ("bad", "poor", "fair", "good", "excellent")


def level_distribution(mos: float) -> np.ndarray:
    """A single score as a distribution over the five levels (linear between neighbours)."""
    p = np.zeros(5)
    lo = int(np.clip(np.floor(mos), 1, 5))
    frac = mos - lo
    p[lo - 1] = 1.0 - frac
    if frac > 0:
        p[lo] = frac
    return p
