"""The pixel side of CAS-IQA's auxiliary paths: the residuals S - F and S - C, in pixels, as tokens.

``wire_prior`` marks the guidewire in F; ``ResidualEncoder`` turns the residual S - aux, beside
aux, the iodine map C - F and that prior, into one token per patch of the ViT's grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def wire_prior(fluoro: torch.Tensor) -> torch.Tensor:
    """Where F has thin dark lines: its local mean minus F, clipped at 0 [B, 1, H, W].

    F (no contrast) holds only the guidewire, the catheter and the anatomy's slow background, so
    this is a guidewire map, the wire's counterpart of VasoMIM's vesselness prior. A box mean
    about 1/40 of the image wide (7 px at 128): wider than the wire, narrower than the
    background's shading. By hand, a box mean rather than skimage's black top-hat: one pooling
    op, batched on the model's device, inside the forward pass."""
    k = max(3, 2 * (fluoro.shape[-1] // 40) + 1)
    return (F.avg_pool2d(fluoro, k, 1, k // 2, count_include_pad=False) - fluoro).clamp_min(0)


class ResidualEncoder(nn.Module):
    """The residual S - aux, beside aux, the iodine map C - F and the wire prior of F (each zeros
    when F or C is not shown), in pixels -> one token per ``patch`` x ``patch`` patch (the ViT's
    grid) of frames ``unshuffle`` times the ViT's size.

    Convolutions, not the ViT: a lost guidewire or side branch is a line a few pixels wide in the
    residual, which small convolutions pick out from few examples; the iodine map tells the two
    apart where the line is (the wire is in C and F alike, a branch only in C). The residual
    weighted by the wire prior is given as a channel of its own: the lost wire is the residual
    exactly on F's wire, a product that conv + GELU stacks did not learn from ~1,000 cases (the
    residual encoder alone, regressing the MOS: guidewire validation SRCC 0.02 without it, 0.73
    with it). Batch normalisation, not a per-sample one, so the tokens keep how much was lost
    (the residual's magnitude).

    ``unshuffle`` > 1: the frames come at that multiple of the ViT's size and the five channels,
    products taken at full resolution, are folded into ``unshuffle`` squared times as many
    channels of the ViT's size (pixel unshuffle, lossless) before a 3 x 3 stem: the 0.36 mm wire is
    under half a pixel across at 128 px, and its loss is measured at 256 (the residual encoder
    alone regressing the guidewire MOS of 1,936 cases, validation SRCC after 12 epochs: 0.858 at
    128 px, 0.875 folded from 256 px, 0.873 with the 5 x 5 stem run on the 256 px frames, 3.5
    times slower than folded)."""

    gain = 4.0  # residuals are a few per cent of the intensity range
    wire_gain = 10.0  # the wire is ~0.1 darker than its surround
    channels = 5

    def __init__(self, dim: int, patch: int = 16, width: int = 32, unshuffle: int = 1):
        super().__init__()
        steps = int(round(math.log2(patch)))
        if 2**steps != patch:
            raise ValueError(f"the residual encoder needs a power-of-two patch size, got {patch}")
        if unshuffle < 1:
            raise ValueError(f"unshuffle must be a positive integer, got {unshuffle}")
        self.unshuffle = int(unshuffle)
        # a stem whose outputs are also multiplied in pairs (a bilinear layer): products of
        # residual and aux filters are matched filters, which additive stacks only approximate
        kernel = 5 if unshuffle == 1 else 3  # 3 x 3 folded pixels span 6 x 6 of the full frame
        self.stem = nn.Conv2d(self.channels * self.unshuffle**2, 3 * width, kernel, stride=2, padding=kernel // 2)
        self.stem_norm = nn.BatchNorm2d(2 * width)
        layers, channels = [], 2 * width
        for i in range(1, steps):
            out = min(width * 2**i, dim)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
            channels = out
        self.net = nn.Sequential(*layers, nn.Conv2d(channels, dim, 1))

    def forward(self, image: torch.Tensor, aux: torch.Tensor, iodine: torch.Tensor, wire: torch.Tensor) -> torch.Tensor:
        residual, wire = self.gain * (image - aux), self.wire_gain * wire
        x = torch.cat([residual, aux, self.gain * iodine, wire, residual * wire], 1)
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        plain, left, right = self.stem(x).chunk(3, 1)
        x = self.net(self.stem_norm(torch.cat([F.gelu(plain), left * right], 1)))
        return x.flatten(2).transpose(1, 2)
