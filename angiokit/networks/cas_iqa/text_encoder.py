"""The prompt encoder of CAS-IQA: a metric's question -> its query [D] for MUST's routing."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ByteTextEncoder(nn.Module):
    """Prompt -> [D] embedding: UTF-8 bytes, learned byte and position embeddings, a small
    transformer, mean pooling over the non-padding bytes."""

    def __init__(self, dim: int = 256, layers: int = 2, heads: int = 4, max_bytes: int = 128):
        super().__init__()
        self.max_bytes = max_bytes
        self.embed = nn.Embedding(257, dim, padding_idx=256)  # 256 = padding
        self.position = nn.Parameter(torch.zeros(1, max_bytes, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: Sequence[str], device) -> torch.Tensor:
        ids = torch.full((len(prompts), self.max_bytes), 256, dtype=torch.long)
        for i, p in enumerate(prompts):
            b = list(p.encode("utf-8"))[: self.max_bytes]
            ids[i, : len(b)] = torch.tensor(b, dtype=torch.long)
        return ids.to(device)

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize(prompts, self.position.device)
        pad = ids == 256
        x = self.encoder(self.embed(ids) + self.position, src_key_padding_mask=pad)
        keep = (~pad).float()[..., None]
        return self.norm((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))
