"""A Hugging Face backbone as CAS-IQA's image encoder (``CASIQA(image_encoder=...)``);
``transformers`` is imported only when one is built."""

from __future__ import annotations

import torch
from torch import nn


class HFVisionEncoder(nn.Module):
    """A Hugging Face vision (or vision-language) backbone from a local path as the image
    encoder: ``AutoModel.from_pretrained(path)``; a VLM's ``vision_model`` is used when present.
    Grey frames are repeated to the backbone's channels; tokens are projected to ``dim``."""

    def __init__(self, path: str, dim: int, local_files_only: bool = True):
        super().__init__()
        from transformers import AutoModel

        model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
        self.backbone = getattr(model, "vision_model", model)
        config = self.backbone.config
        self.channels = int(getattr(config, "num_channels", 3))
        self.project = nn.Linear(int(config.hidden_size), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        out = self.backbone(pixel_values=x)
        return self.project(out.last_hidden_state)
