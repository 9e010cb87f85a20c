"""DiceCE plus, optionally, soft clDice (Shit et al., CVPR 2021) for logits [B, C, H, W] and
class-index labels [B, 1, H, W]: the weighted sum of MONAI's ``DiceCELoss`` and
``SoftclDiceLoss`` (foreground classes only), as one module a config can name."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, SoftclDiceLoss
from torch import nn


class VesselSegmentationLoss(nn.Module):
    def __init__(self, cldice_weight: float = 0.0, cldice_iterations: int = 3, lambda_dice: float = 1.0, lambda_ce: float = 1.0):
        super().__init__()
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
        self.cldice_weight = float(cldice_weight)
        self.cldice = SoftclDiceLoss(iter_=cldice_iterations, include_background=False, to_onehot_y=True, softmax=True) if cldice_weight > 0 else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.dice_ce(logits, target)
        if self.cldice is not None:
            loss = loss + self.cldice_weight * self.cldice(logits.float(), target)
        return loss
