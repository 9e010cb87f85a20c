"""A segmenter that needs no training: Hessian vesselness -> threshold -> mask.

The paper's "Frangi" row. Per image the vesselness is scaled to [0, 1] by its maximum, then
thresholded either by Otsu's method per image (no data needed) or by one global threshold tuned
to the best mean Dice on a training split (``fit``), never on the test split.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from skimage.filters import threshold_otsu

from ..metrics import dice_score
from ..transforms import vesselness


class VesselnessThresholdSegmenter(torch.nn.Module):
    def __init__(self, method: str = "frangi", sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0), threshold: str | float = "otsu", black_ridges: bool = True):
        super().__init__()
        if not (threshold == "otsu" or isinstance(threshold, (int, float))):
            raise ValueError(f"threshold must be 'otsu' or a number in [0, 1], got {threshold!r}")
        self.method, self.sigmas, self.black_ridges = method, tuple(float(s) for s in sigmas), black_ridges
        self.threshold = threshold

    def response(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] frames -> [B, 1, H, W] vesselness scaled to [0, 1] per image."""
        v = vesselness(images, self.sigmas, self.method, self.black_ridges)
        return v / v.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] frames -> [B, 1, H, W] {0, 1} float masks."""
        v = self.response(images)
        if self.threshold == "otsu":
            cuts = [threshold_otsu(x.detach().cpu().numpy()) if x.max() > x.min() else 1.0 for x in v]
            cut = torch.tensor(cuts, dtype=v.dtype, device=v.device).view(-1, 1, 1, 1)
        else:
            cut = float(self.threshold)
        return (v > cut).to(v.dtype)

    def fit(self, images: Iterable[torch.Tensor], masks: Iterable[np.ndarray], grid: Sequence[float] = tuple(np.linspace(0.02, 0.6, 59))) -> float:
        """Pick the global threshold with the best mean Dice over (image [1, H, W], mask) pairs."""
        responses = [self.response(img[None].float())[0, 0].numpy() for img in images]
        targets = [np.asarray(m) > 0 for m in masks]
        if not responses:
            raise ValueError("fit() needs at least one labelled training image")
        scores = [np.mean([dice_score(r > t, g) for r, g in zip(responses, targets)]) for t in grid]
        self.threshold = float(grid[int(np.argmax(scores))])
        return self.threshold
