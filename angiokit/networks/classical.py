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
from .checkpoint import records_constructor


@records_constructor
class VesselnessThresholdSegmenter(torch.nn.Module):
    """Args: ``method`` "frangi" or "sato", ``sigmas`` its scales, ``threshold`` "otsu" or a
    number in [0, 1]; ``out_channels`` 1 returns the {0, 1} mask, 2 returns it as two-class
    scores [background, vessel] (what the segmentation bundle's evaluation and inference take)."""

    def __init__(self, method: str = "frangi", sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0), threshold: str | float = "otsu", black_ridges: bool = True, out_channels: int = 1):
        super().__init__()
        if not (threshold == "otsu" or isinstance(threshold, (int, float))):
            raise ValueError(f"threshold must be 'otsu' or a number in [0, 1], got {threshold!r}")
        if out_channels not in (1, 2):
            raise ValueError(f"out_channels must be 1 (mask) or 2 (background / vessel scores), got {out_channels}")
        self.out_channels = int(out_channels)
        self.method, self.sigmas, self.black_ridges = method, tuple(float(s) for s in sigmas), black_ridges
        self.threshold = threshold

    def response(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] frames -> [B, 1, H, W] vesselness scaled to [0, 1] per image."""
        v = vesselness(images, self.sigmas, self.method, self.black_ridges)
        return v / v.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] frames -> [B, 1, H, W] {0, 1} float masks ([B, 2, H, W] one-hot with
        ``out_channels`` 2)."""
        with torch.autocast(images.device.type, enabled=False):  # Hessians in fp16 under AMP would lose the thin vessels
            mask = self.mask(images.float())
        return torch.cat([1 - mask, mask], 1) if self.out_channels == 2 else mask

    def mask(self, images: torch.Tensor) -> torch.Tensor:
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
        self.constructor["threshold"] = self.threshold  # a checkpoint of it keeps the fitted cut
        return self.threshold
