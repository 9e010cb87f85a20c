"""How the benchmark's labels are made from what S visibly lost: the severities (``visible_severities``,
measured by ``QualityScene``), the monotone rule severity -> score and the simulated raters.

``LABEL_RULE`` names the rule; a benchmark records it, and a cached one of another rule is remade.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .failures import Failure
from .scale import METRICS

# the guidewire's label: its displayed contrast lost in S, as a share of what C displays of it but
# of at least this fraction of what the bare background (F) displays (``QualityScene._visible_damage``)
WIRE_CONTRAST_FLOOR = 0.2
# names the rule that turns renderings into labels; a cached benchmark of another rule is remade
LABEL_RULE = f"visible contrast, wire floor {WIRE_CONTRAST_FLOOR}"


def visible_severities(damage: Dict[str, float], failure: Failure) -> Dict[str, float]:
    """The severities the labels are made from: what S visibly lost for the guidewire and the
    branches (the failure's parameter is not visible: e.g. a wire broken outside the view is
    intact in it, a faded wire still clipped black looks the same), the artifacts' strength."""
    return {"guidewire": min(damage["guidewire"], 1.0), "branch": min(damage["branch"], 1.0), "artifact": failure.artifact}


def score_from_severity(severity: float) -> float:
    """The monotone rule: 5 for no failure, 1 for the worst."""
    return 5.0 - 4.0 * float(np.clip(severity, 0.0, 1.0))


def rate(severities: Dict[str, float], rng: np.random.Generator, raters: int = 5, bias_sd: float = 0.3, noise_sd: float = 0.5, biases: Optional[np.ndarray] = None) -> Dict[str, dict]:
    """Simulated raters -> per metric: MOS, std, the raters' scores and their level histogram."""
    biases = rng.normal(0.0, bias_sd, raters) if biases is None else biases
    out = {}
    for metric in METRICS:
        q = score_from_severity(severities[metric])
        scores = np.clip(np.rint(q + biases + rng.normal(0.0, noise_sd, raters)), 1, 5).astype(int)
        hist = np.bincount(scores - 1, minlength=5) / raters
        out[metric] = {"mos": float(scores.mean()), "std": float(scores.std()), "scores": scores.tolist(), "distribution": hist.tolist()}
    return out
