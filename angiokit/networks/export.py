"""What ``python -m monai.bundle ckpt_export`` writes for each bundle: the trained network with the
part of inference that a user of the TorchScript file would otherwise have to rewrite.

- ``ResizingExport`` (segmentation): frames of any size in, logits at that size out; the resize
  to and from the training size is the bundle inferer's (``resize_to_network`` /
  ``resize_to_frame``, one home for both).
- ``QualityScoresExport`` (CAS-IQA): the frame and its auxiliary images as channels of one
  tensor in, the 1-5 score per metric out (one orientation; the bundle's inference averages 8).

Both keep the wrapped network's weight names (``state_dict`` / ``load_state_dict`` delegate to
it), so ``ckpt_export --key_in_ckpt model`` loads the checkpoint into them as it is saved: the
config's network is built from the checkpoint's record without weights, and ckpt_export's
loading is what fills them.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.correlation import predicted_scores


def resize_to_network(frames: torch.Tensor, size: List[int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size]: area averaging when shrinking, bilinear when enlarging."""
    if frames.shape[-2] == size[0] and frames.shape[-1] == size[1]:
        return frames
    return F.interpolate(frames, size=size, mode="area" if frames.shape[-2] > size[0] else "bilinear")


def resize_to_frame(logits: torch.Tensor, size: List[int]) -> torch.Tensor:
    """Logits at the network's size -> at the frame's ``size`` (bilinear)."""
    if logits.shape[-2] == size[0] and logits.shape[-1] == size[1]:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class _DelegatedWeights(nn.Module):
    """Weights under the wrapped ``network``'s own names (see the module docstring); subclasses
    set ``self.network``."""

    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)


class ResizingExport(_DelegatedWeights):
    """A segmentation network that takes [B, 1, H, W] frames of any size (scaled to [0, 1], as the
    bundle's preprocessing does) and returns [B, classes, H, W] logits."""

    def __init__(self, network: nn.Module, image_size: int):
        super().__init__()
        self.network = network
        self.size = [int(image_size), int(image_size)]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frame_size = [frames.shape[-2], frames.shape[-1]]
        return resize_to_frame(self.network(resize_to_network(frames, self.size)), frame_size)


class QualityScoresExport(_DelegatedWeights):
    """CAS-IQA with one tensor in: [B, 1 + A, S, S], channel 0 the synthetic frame and then the
    auxiliary images the model was built with (``network.auxiliary``, e.g. fluoro, reference),
    each scaled to [0, 1] at the training size S; out: [B, M] scores in 1-5 (the expected level
    for the 5-level models, the regressed score for a regressor)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.auxiliary = list(getattr(network, "auxiliary", ()))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        images = frames.split(1, dim=1)
        return predicted_scores(self.network(images[0], **{name: images[1 + i] for i, name in enumerate(self.auxiliary)}))
