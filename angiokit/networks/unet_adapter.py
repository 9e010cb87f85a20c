"""The UNet adapter: CheXWorld's segmentation decoder for a plain ViT (VasoMIM's segmentation recipe).

A plain ViT has one resolution (the patch grid, stride = patch size ``p``). The adapter builds a
four-level pyramid from the *last* block's tokens (as ViTDet's simple feature pyramid: every level
from the one final map, none from intermediate blocks) at strides 2, 4, 8 and 16 of the image,
with 2C, 4C, 8C and 16C channels (C = ``base_channels``, 32 as CheXWorld: 64 / 128 / 256 / 512),
adds a full-resolution level from the input image (a conv block, C channels) and decodes it
UNet-style: from the stride-16 level, four times (nearest x2 upsampling, concatenation with the
next finer level, a residual double-conv block), then a 1x1 conv to the classes.

Each pyramid level resamples the token grid by ``p / stride``:

- upsampling by 2^k: k steps of (nearest x2 upsampling, 3x3 conv, norm, GELU), halving the width
  each step, the last step giving the level's channels (CheXWorld's ``UNetAdapterConv``, its
  patch-16 adapter: x8, x4, x2 and x1);
- x1: 1x1 conv, norm, GELU;
- x1/2: 2x2 stride-2 conv, norm, GELU (the downsampled level of CheXWorld's patch-8 adapter,
  ``UNetAdapter_4LayersConv``, there with transposed convolutions for the upsampled levels).

So patch 16 gives x8, x4, x2, x1 and patch 8 (recommended for segmentation) x4, x2, x1, x1/2; any
power-of-two patch from 4 to 32 works. The image size must be a multiple of 16 and of the patch.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from monai.networks.blocks.transformerblock import TransformerBlock
from monai.networks.layers.utils import get_norm_layer
from torch import nn

STRIDES = (2, 4, 8, 16)
"""Strides (in image pixels) of the pyramid levels, finest first."""


def _norm(name, channels: int) -> nn.Module:
    return get_norm_layer(name, spatial_dims=2, channels=channels)


class ConvBlock(nn.Module):
    """Two (3x3 conv, norm, GELU) with a residual connection (1x1 conv where the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, norm_name="batch"):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), _norm(norm_name, out_channels), nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), _norm(norm_name, out_channels), nn.GELU(),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.skip(x)


class UpBlock(nn.Module):
    """Nearest x2 upsampling of the coarser map (2c channels), concatenation with the skip (c
    channels), ``ConvBlock`` 3c -> c."""

    def __init__(self, channels: int, norm_name="batch"):
        super().__init__()
        self.block = ConvBlock(3 * channels, channels, norm_name)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat((F.interpolate(x, scale_factor=2.0, mode="nearest"), skip), dim=1))


def pyramid_level(hidden_size: int, out_channels: int, scale: float, norm_name="batch") -> nn.Sequential:
    """Token grid [B, hidden_size, h, w] -> [B, out_channels, h * scale, w * scale]; ``scale`` is a
    power of two from 1/2 to 8."""
    if scale == 0.5:
        return nn.Sequential(nn.Conv2d(hidden_size, out_channels, 2, stride=2), _norm(norm_name, out_channels), nn.GELU())
    if scale == 1:
        return nn.Sequential(nn.Conv2d(hidden_size, out_channels, 1), _norm(norm_name, out_channels), nn.GELU())
    steps = int(round(math.log2(scale)))
    if steps < 1 or 2**steps != scale:
        raise ValueError(f"a pyramid level resamples the token grid by a power of two from 1/2 up, not {scale}")
    layers: List[nn.Module] = []
    width = hidden_size
    for i in range(steps):
        # halve the width each step (as CheXWorld), never below the level's channels
        nxt = out_channels if i == steps - 1 else max(width // 2, out_channels)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, nxt, 3, padding=1), _norm(norm_name, nxt), nn.GELU()]
        width = nxt
    return nn.Sequential(*layers)


def check_sizes(img_size: int, patch_size: int) -> None:
    """Raise a ``ValueError`` naming what fits when the adapter cannot be built for these sizes."""
    if patch_size < 4 or patch_size > 32 or patch_size & (patch_size - 1):
        raise ValueError(f"the UNet adapter takes a patch size of 4, 8, 16 or 32 (pyramid strides {STRIDES}), got {patch_size}")
    multiple = max(STRIDES[-1], patch_size)
    if img_size % multiple:
        raise ValueError(
            f"img_size {img_size} does not fit the UNet adapter with patch {patch_size}: it must be a multiple of {multiple} "
            f"(the patch and the coarsest pyramid stride, {STRIDES[-1]}), e.g. {max(multiple, img_size // multiple * multiple)}"
        )


class UNetAdapter(nn.Module):
    """Pyramid from the last ViT block + UNet decoder.

    Args:
        in_channels: image channels (the full-resolution level convolves the image itself).
        out_channels: classes.
        hidden_size: ViT width.
        patch_size: ViT patch size (the token grid's stride).
        base_channels: C; the levels have C (full resolution), 2C, 4C, 8C, 16C channels.
        norm_name: MONAI norm name of the convolutions (CheXWorld: batch norm, synchronised).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_size: int, patch_size: int, base_channels: int = 32, norm_name="batch"):
        super().__init__()
        channels = [base_channels * 2**i for i in range(len(STRIDES) + 1)]  # full resolution, then STRIDES
        self.stem = ConvBlock(in_channels, channels[0], norm_name)
        self.pyramid = nn.ModuleList(pyramid_level(hidden_size, c, patch_size / s, norm_name) for c, s in zip(channels[1:], STRIDES))
        self.up = nn.ModuleList(UpBlock(c, norm_name) for c in reversed(channels[:-1]))  # coarsest first
        self.out = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """``image`` [B, in, H, W], ``grid`` the last block's tokens as [B, hidden, H/p, W/p]."""
        levels: List[torch.Tensor] = [self.stem(image)]
        for level in self.pyramid:
            levels.append(level(grid))
        x = levels[-1]
        for i, up in enumerate(self.up):
            x = up(x, levels[len(levels) - 2 - i])
        return self.out(x)


def tokens_to_grid(tokens: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
    """[B, N, D] patch tokens (no cls token) -> [B, D, h, w]."""
    b, n, d = tokens.shape
    h, w = grid_size
    if n != h * w:
        raise ValueError("{} tokens do not make a {}x{} grid (the input size differs from the network's img_size?)".format(n, h, w))
    return tokens.transpose(1, 2).reshape(b, d, h, w)


class DropPath(nn.Module):
    """Stochastic depth on a residual branch's output: in training, the branch of each sample is
    dropped with probability ``rate`` and kept ones are scaled by 1 / (1 - rate); identity in eval."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0.0:
            return x
        keep = 1.0 - self.rate
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class DropPathTransformerBlock(TransformerBlock):
    """MONAI's ``TransformerBlock`` with stochastic depth on its residual branches (its forward,
    with ``drop_path`` around each branch). MONAI's block has no drop path; this class only
    replaces the forward of an existing block (``add_drop_path``), so its weights keep their names
    and the exported VasoMIM encoder and older checkpoints still load strictly; it scripts
    (TorchScript), as the export needs."""

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask=attn_mask))
        if self.with_cross_attention:
            x = x + self.drop_path(self.cross_attn(self.norm_cross_attn(x), context=context))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def add_drop_path(blocks: Sequence[nn.Module], drop_path: float) -> None:
    """Stochastic depth in MONAI ``TransformerBlock``s, rate rising linearly from 0 (first block) to
    ``drop_path`` (last), as timm / BEiT / MAE fine-tuning. Each block becomes a
    ``DropPathTransformerBlock`` in place (same child modules, a parameter-free ``drop_path``
    child that follows ``train()`` / ``eval()``); the state dict is unchanged."""
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path is a probability in [0, 1), got {drop_path}")
    if drop_path == 0.0:
        return
    n = len(blocks)
    for i, block in enumerate(blocks):
        if type(block) is not TransformerBlock:
            raise TypeError(f"drop path is added to MONAI TransformerBlocks, got {type(block).__name__}")
        block.__class__ = DropPathTransformerBlock
        block.drop_path = DropPath(drop_path * i / (n - 1) if n > 1 else drop_path)


def sample_dropout_only(network: nn.Module) -> nn.Module:
    """Monte-Carlo dropout mode: every module in eval but the stochastic ones (dropout, drop
    path), which sample. ``network.train()`` would also put batch norm (the adapter's decoder) in
    training mode: each frame normalised by its own statistics, the running ones overwritten by
    every scored study."""
    network.eval()
    for module in network.modules():
        if isinstance(module, (nn.modules.dropout._DropoutNd, DropPath)):
            module.train()
    return network


__all__ = ["DropPath", "DropPathTransformerBlock", "UNetAdapter", "add_drop_path", "check_sizes", "sample_dropout_only", "tokens_to_grid"]
