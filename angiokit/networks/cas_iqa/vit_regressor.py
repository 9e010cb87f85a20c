"""The plain-ViT baseline of the CAS-IQA benchmark (the "vit_regressor" ablation)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import records_constructor, update_constructor
from ..encoder_export import SIZE_KEYS, vit_sizes
from .image_encoder import encoder_downsampling, image_vit


@records_constructor
class ViTRegressor(nn.Module):
    """Baseline: a plain ViT on S alone, mean-pooled, regressing the metric scores (no prompts,
    no auxiliary images, no MUST)."""

    def __init__(self, preset: str = "vit_b16", img_size: int = 224, num_metrics: int = 3, pretrained_encoder: Optional[str] = None, encoder_size: Optional[int] = None, pretrained_format: str = "auto", layer_norm_eps: Optional[float] = None, **overrides):
        super().__init__()
        cfg = vit_sizes(preset, overrides, pretrained_encoder, pretrained_format)
        update_constructor(self, **{k: cfg[k] for k in SIZE_KEYS})
        self.downsample = encoder_downsampling(img_size, encoder_size)  # as CASIQA's ViT sees S
        self.vit = image_vit(cfg, int(img_size) // self.downsample, pretrained_encoder=pretrained_encoder, pretrained_format=pretrained_format, owner=self, layer_norm_eps=layer_norm_eps)
        self.head = nn.Sequential(nn.LayerNorm(cfg["hidden_size"]), nn.Linear(cfg["hidden_size"], num_metrics))

    def forward(self, image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        tokens, _ = self.vit(F.avg_pool2d(image, self.downsample) if self.downsample > 1 else image)
        return 3.0 + 2.0 * torch.tanh(self.head(tokens.mean(1)))  # [B, M] in (1, 5)
