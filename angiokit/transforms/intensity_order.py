"""Input transforms that keep what a vessel is and drop what a site's imaging chain adds.

- ``local_intensity_order``: LIOT (Shi et al., "Local Intensity Order Transformation for Robust
  Curvilinear Object Segmentation", IEEE TIP 2022): per direction (up, down, left, right), an
  8-bit code of whether the pixel is brighter than each of its next 8 neighbours that way. A
  vessel is darker than what lies across it, whatever the contrast, gain or gamma of the system,
  so the code is the same on synthetic and real frames where the intensities are not.
- ``local_contrast``: (frame - local mean) / local sd over a window of about 1/8 of the frame,
  squashed to [-1, 1]: wide dark proximal segments and thin distal ones end up alike, and slow
  shading (heart shadow, vignetting) is gone.

``InputTransform`` holds one of them as the first layer of a network (``ViTSegmenter``'s
``input_transform``), so training, evaluation, inference, the exported model and the annotation
server cannot disagree on it; it has no weights. Both are written with plain tensor ops so the
network still scripts (MONAI has neither).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INPUT_TRANSFORMS = ("none", "local_intensity_order", "local_contrast")
LIOT_REACH = 8
"""Neighbours compared per direction: one byte per direction, as in the paper."""


def local_intensity_order(x: torch.Tensor, reach: int = LIOT_REACH) -> torch.Tensor:
    """[B, C, H, W] -> [B, 4C, H, W] in [0, 1]: for each direction, sum over k = 1..reach of
    2^(k-1) * [x(p) > x(p + k * direction)], divided by 2^reach - 1 (edges replicated)."""
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (reach, reach, reach, reach), mode="replicate")
    codes = []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        code = torch.zeros_like(x)
        for k in range(1, reach + 1):
            top, left = reach + dy * k, reach + dx * k
            neighbour = padded[:, :, top : top + h, left : left + w]
            code = code + (x > neighbour).to(x.dtype) * float(2 ** (k - 1))
        codes.append(code / float(2**reach - 1))
    return torch.cat(codes, dim=1)


def local_contrast(x: torch.Tensor, window_fraction: float = 0.125, eps: float = 1e-3) -> torch.Tensor:
    """[B, C, H, W] -> same shape in [-1, 1]: tanh((x - box mean) / (box sd + eps) / 2) over an
    odd box about ``window_fraction`` of the frame's shorter side (reflected edges)."""
    size = max(3, int(min(x.shape[-2], x.shape[-1]) * window_fraction) // 2 * 2 + 1)
    r = size // 2
    padded = F.pad(x, (r, r, r, r), mode="reflect")
    mean = F.avg_pool2d(padded, size, stride=1)
    var = (F.avg_pool2d(padded * padded, size, stride=1) - mean * mean).clamp_min(0.0)
    return torch.tanh((x - mean) / (var.sqrt() + eps) / 2.0)


class InputTransform(torch.nn.Module):
    """One of ``INPUT_TRANSFORMS`` as a weightless first layer; ``channels(c)`` is what it gives
    for ``c`` input channels."""

    def __init__(self, name: str = "none"):
        super().__init__()
        if name not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {name!r}")
        self.name = name

    def channels(self, in_channels: int) -> int:
        return 4 * in_channels if self.name == "local_intensity_order" else in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "local_intensity_order":
            return local_intensity_order(x)
        if self.name == "local_contrast":
            return local_contrast(x)
        return x

    def extra_repr(self) -> str:
        return self.name
