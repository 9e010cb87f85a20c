"""VasoMIM's anatomical consistency loss: BCE(S(reconstruction), S(original)).

S is the frozen vessel segmenter of ``angiokit.networks.anatomy`` (any module mapping frames
[B, C, H, W] to a vessel logit [B, 1, H, W]). The loss compares S's logits on the reconstruction
with S's probabilities on the original frame, so the reconstruction is pushed to keep the
vessels S sees; gradients flow through S into the reconstruction, never into S (its parameters
are frozen by ``AnatomyGuidance``, and the target is detached here).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def anatomical_consistency_loss(segmenter: Callable[[torch.Tensor], torch.Tensor], reconstruction: torch.Tensor, target_segmentation: torch.Tensor) -> torch.Tensor:
    """Mean BCE between S(reconstruction) and S(original).

    Args:
        segmenter: S, frames [B, C, H, W] -> vessel logits [B, 1, H, W].
        reconstruction: [B, C, H, W], the frame the MAE filled in (differentiable).
        target_segmentation: [B, 1, H, W] vessel probabilities S gave the original frame.

    Returns:
        scalar loss; BCE on logits (numerically stable under autocast, computed in float32).
    """
    logits = segmenter(reconstruction).float()
    return F.binary_cross_entropy_with_logits(logits, target_segmentation.detach().float())
