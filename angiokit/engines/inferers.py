"""Inferers for frames of any size and for cines.

``ResizeInferer`` resizes the input to the network's training size and the logits back to the
input's size, so predictions (and metrics) are at the original resolution whatever the frame
size. ``CineInferer`` runs a frame inferer over every frame of a cine ([1, T, H, W] -> a batch
of T frames) and returns [T, C, H, W] logits. ``OrientationAveragingInferer`` averages a
quality scorer over the flips and quarter turns of its input frames.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from monai.inferers import Inferer

from ..networks.export import resize_to_frame, resize_to_network


class ResizeInferer(Inferer):
    def __init__(self, roi_size: Union[int, Sequence[int]] = 224):
        super().__init__()
        self.roi_size = (int(roi_size),) * 2 if isinstance(roi_size, int) else tuple(int(s) for s in roi_size)

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        logits = network(resize_to_network(inputs, list(self.roi_size)), *args, **kwargs)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return resize_to_frame(logits, list(inputs.shape[-2:]))


class CineInferer(Inferer):
    """[B, T, H, W] frames (T in the channel axis, as loaded from a cine) -> [B * T, C, H, W]."""

    def __init__(self, frame_inferer: Inferer, max_batch: int = 16):
        super().__init__()
        self.frame_inferer, self.max_batch = frame_inferer, int(max_batch)

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        frames = inputs.reshape(-1, 1, *inputs.shape[-2:])
        return torch.cat([self.frame_inferer(chunk, network, *args, **kwargs) for chunk in frames.split(self.max_batch)])


class OrientationAveragingInferer(Inferer):
    """Quality predictions averaged over the orientations of the input: 1 (as is), 4 (the
    quarter turns) or 8 (the quarter turns of the frame and of its mirror image).

    Keyword inputs with the frame's height and width (CAS-IQA's auxiliary frames F and C) are
    turned with it, as their pixels align; the others (availability flags) pass unchanged.
    Level logits [B, M, L] are averaged as probabilities and returned as their log, so the
    expected level is the mean of the orientations' expected levels; score outputs [B, M] are
    averaged as they are. By hand: MONAI's ``TestTimeAugmentation`` draws random transforms of
    a data dict and inverts them for dense outputs; a score needs no inverse, and the eight
    fixed orientations cover the flips and quarter turns exactly once each."""

    def __init__(self, orientations: int = 8):
        super().__init__()
        if orientations not in (1, 4, 8):
            raise ValueError(f"orientations must be 1, 4 or 8, got {orientations}")
        self.orientations = int(orientations)

    @staticmethod
    def orient(x: torch.Tensor, k: int) -> torch.Tensor:
        """Orientation ``k`` (0-7) of [..., H, W]: mirrored for k >= 4, then k % 4 quarter turns."""
        return torch.rot90(x.flip(-1) if k >= 4 else x, k % 4, (-2, -1))

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        frame = inputs.shape[-2:]
        if self.orientations > 1 and frame[0] != frame[1]:
            raise ValueError(f"turning a frame a quarter needs a square frame (the scorer's input size), got {tuple(frame)}")
        total = None
        for k in range(self.orientations):
            turned = {n: self.orient(v, k) if torch.is_tensor(v) and v.ndim == inputs.ndim and v.shape[-2:] == frame else v for n, v in kwargs.items()}
            out = network(self.orient(inputs, k), *args, **turned)
            out = out.float().softmax(-1) if out.ndim == 3 else out.float()
            total = out if total is None else total + out
        mean = total / self.orientations
        return mean.clamp_min(1e-12).log() if mean.ndim == 3 else mean
