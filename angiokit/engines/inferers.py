"""Inferers for frames of any size and for cines.

``ResizeInferer`` resizes the input to the network's training size and the logits back to the
input's size, so predictions (and metrics) are at the original resolution whatever the frame
size. ``CineInferer`` runs a frame inferer over every frame of a cine ([1, T, H, W] -> a batch
of T frames) and returns [T, C, H, W] logits.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F
from monai.inferers import Inferer


class ResizeInferer(Inferer):
    def __init__(self, roi_size: Union[int, Sequence[int]] = 224):
        super().__init__()
        self.roi_size = (int(roi_size),) * 2 if isinstance(roi_size, int) else tuple(int(s) for s in roi_size)

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        size = tuple(inputs.shape[-2:])
        x = inputs if size == self.roi_size else F.interpolate(inputs, size=self.roi_size, mode="area" if size[0] > self.roi_size[0] else "bilinear")
        logits = network(x, *args, **kwargs)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return logits if size == self.roi_size else F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class CineInferer(Inferer):
    """[B, T, H, W] frames (T in the channel axis, as loaded from a cine) -> [B * T, C, H, W]."""

    def __init__(self, frame_inferer: Inferer, max_batch: int = 16):
        super().__init__()
        self.frame_inferer, self.max_batch = frame_inferer, int(max_batch)

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        frames = inputs.reshape(-1, 1, *inputs.shape[-2:])
        return torch.cat([self.frame_inferer(chunk, network, *args, **kwargs) for chunk in frames.split(self.max_batch)])
