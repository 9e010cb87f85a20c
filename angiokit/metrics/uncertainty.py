"""Uncertainty of a vessel segmenter from Monte-Carlo dropout samples, for active learning.

``epistemic_entropy``: mean predictive entropy over the frame (MONAI Label's epistemic score).
``branch_entropy``: the same, only over thin vessels - predicted vessel pixels within
``max_radius_px`` of the vessel's edge (distal branches, side branches) and the uncertain rim
around them. Annotators' corrections matter most there: thin branches decide topology (clDice),
the main vessels are rarely wrong, and the background's entropy is mostly noise.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from scipy.ndimage import binary_dilation, distance_transform_edt


def predictive_entropy(probs: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] softmax samples -> [H, W] entropy of their mean (nats)."""
    mean = probs.float().mean(0).clamp_min(1e-8)
    return (-(mean * mean.log()).sum(0)).cpu().numpy()


def thin_vessel_region(vessel_probability: np.ndarray, max_radius_px: float = 2.0, threshold: float = 0.3) -> np.ndarray:
    """Pixels of thin predicted vessels (distance to the vessel edge <= max_radius_px on a vessel
    whose centre is no wider) and a 2-pixel rim around them."""
    vessel = vessel_probability > threshold
    if not vessel.any():
        return np.zeros_like(vessel)
    depth = distance_transform_edt(vessel)
    wide = binary_dilation(depth > max_radius_px, iterations=int(np.ceil(max_radius_px)) + 1)  # wide vessels and their edges
    thin = vessel & ~wide
    return binary_dilation(thin, iterations=2)


def mc_dropout_scores(probs: torch.Tensor, max_radius_px: float = 2.0) -> Dict[str, float]:
    """Both scores from [N, C, H, W] samples (C = 2: background, vessel)."""
    entropy = predictive_entropy(probs)
    region = thin_vessel_region(probs[:, 1].float().mean(0).cpu().numpy(), max_radius_px)
    return {
        "epistemic_entropy": float(entropy.mean()),
        "branch_entropy": float(entropy[region].mean()) if region.any() else 0.0,
        "thin_vessel_fraction": float(region.mean()),
    }
