"""Batched multi-scale Hessian vesselness (Sato, Frangi) in PyTorch, CPU or CUDA.

Same definitions as ``skimage.filters.sato`` / ``frangi`` (2-D): per scale sigma the Hessian of
the Gaussian-smoothed image, closed-form 2x2 eigenvalues, then

    sato    sigma^2 * max(lambda_max, 0)                       (the largest eigenvalue)
    frangi  exp(-Rb^2 / 2 beta^2) * (1 - exp(-S^2 / 2 gamma^2)), Rb = |l1| / l2, S = |(l1, l2)|
            (eigenvalues sorted by magnitude, l2 clipped to 1e-10 so the wrong polarity -> 0;
            gamma = half the largest S of each image and scale, as skimage does)

and the maximum over scales. Dark ridges (contrast-filled vessels on an angiogram) by default.

Why hand-written: skimage runs one numpy image at a time (about 0.25 s per 512x512 frame on one
core), which cannot sit inside a training step; MONAI has no 2-D Hessian vesselness. Speed comes
from Gaussian smoothing followed by finite differences, with the smoothing reduced by the
variance the [1, -2, 1] stencil adds (1/6 px^2), each scale smoothing the previous one further
(a scale-space cascade) by separable shifted-view sums. Agreement with skimage is tested
(Pearson >= 0.95, top-8 % mask IoU >= 0.9 on synthetic angiograms) away from the image border:
skimage reflects its *gradient* images at the border (two first-derivative passes, each with
mode="reflect"), which puts a spurious ridge along the edges that we do not reproduce.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

SECOND_DIFF_VARIANCE = 1.0 / 6.0


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, 1, H, W], symmetric edges (identity for sigma ~ 0).

    Each pass is a weighted sum of shifted views (one fused multiply-add per tap): no
    transposes or im2col copies, which dominate a 1-channel ``conv2d`` at the kernel sizes the
    cascade needs (7-15 taps).
    """
    if sigma < 0.05:
        return x
    k = _gaussian_kernel(sigma, x.device, x.dtype).tolist()
    r = (len(k) - 1) // 2
    h, w = x.shape[-2:]
    if r >= min(h, w):
        raise ValueError(f"image of {h}x{w} pixels is too small for a Gaussian of sigma {sigma:.2f}")
    for dim, size in ((-1, w), (-2, h)):
        padded = torch.cat([x.narrow(dim, 0, r).flip(dim), x, x.narrow(dim, size - r, r).flip(dim)], dim=dim)
        out = padded.narrow(dim, 0, size) * k[0]
        for i in range(1, len(k)):
            out.add_(padded.narrow(dim, i, size), alpha=k[i])
        x = out
    return x


def hessian_from_smoothed(s: torch.Tensor):
    """(Hxx, Hxy, Hyy) of a smoothed [N, 1, H, W] image by finite differences (replicate edges)."""
    p = F.pad(s, (1, 1, 1, 1), mode="replicate")
    c = p[..., 1:-1, 1:-1]
    hxx = p[..., 1:-1, 2:] - 2 * c + p[..., 1:-1, :-2]
    hyy = p[..., 2:, 1:-1] - 2 * c + p[..., :-2, 1:-1]
    hxy = 0.25 * (p[..., 2:, 2:] - p[..., 2:, :-2] - p[..., :-2, 2:] + p[..., :-2, :-2])
    return hxx, hxy, hyy


def hessian_eigenvalues(hxx: torch.Tensor, hxy: torch.Tensor, hyy: torch.Tensor):
    """Closed-form eigenvalues of the symmetric 2x2 Hessian: (larger, smaller)."""
    half_trace = 0.5 * (hxx + hyy)
    # + 1e-10: sqrt's gradient is infinite at 0, and the consistency loss differentiates this
    radius = torch.sqrt(0.25 * (hxx - hyy) ** 2 + hxy * hxy + 1e-10)
    return half_trace + radius, half_trace - radius


def _response(method: str, l_big: torch.Tensor, l_small: torch.Tensor, sigma: float, beta: float, gamma=None) -> torch.Tensor:
    if method == "sato":
        return sigma**2 * l_big.clamp_min(0.0)
    # frangi: sort by magnitude
    swap = l_small.abs() > l_big.abs()
    l1 = torch.where(swap, l_big, l_small)
    l2 = torch.where(swap, l_small, l_big).clamp_min(1e-10)
    rb2 = (l1 / l2) ** 2
    s2 = l1 * l1 + l2 * l2
    if gamma is None:
        gamma2 = (s2.flatten(1).amax(1).sqrt() / 2).clamp_min(1e-12).pow(2).view(-1, 1, 1, 1)
    else:
        gamma2 = float(gamma) ** 2
    return torch.exp(-rb2 / (2 * beta**2)) * (1.0 - torch.exp(-s2 / (2 * gamma2)))


def vesselness(
    images: torch.Tensor,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
    method: str = "sato",
    black_ridges: bool = True,
    beta: float = 0.5,
    gamma: float = None,
) -> torch.Tensor:
    """Multi-scale vesselness of a batch of frames.

    Args:
        images: [N, 1, H, W], [N, H, W] or [H, W] (any float dtype; computed in float32).
        sigmas: Gaussian scales in pixels (skimage's ``sigmas``).
        method: "sato" or "frangi".
        black_ridges: True for dark vessels on a bright background (angiograms).
        beta: Frangi's blob sensitivity.
        gamma: Frangi's structureness scale (None: half the largest Hessian norm per image and
            scale, as skimage).

    Returns:
        Tensor of the input's shape, float32, >= 0 (Sato in image units x sigma^2, Frangi in [0, 1]).
    """
    if method not in ("sato", "frangi"):
        raise ValueError(f"method must be 'sato' or 'frangi', got {method!r}")
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"sigmas must be positive, got {tuple(sigmas)}")
    shape = images.shape
    if images.ndim == 2:
        x = images[None, None]
    elif images.ndim == 3:
        x = images[:, None]
    elif images.ndim == 4 and images.shape[1] == 1:
        x = images
    else:
        raise ValueError(f"expected [H, W], [N, H, W] or [N, 1, H, W] frames, got shape {tuple(shape)}")
    x = x.float()
    if not black_ridges:
        x = -x
    best = torch.zeros_like(x)
    # scale-space cascade: each scale smooths the previous one up to sigma^2, less the variance
    # that the difference stencils add themselves
    level, variance = x, 0.0
    for sigma in sorted(sigmas):
        target = sigma**2 - SECOND_DIFF_VARIANCE
        level = gaussian_blur(level, math.sqrt(max(target - variance, 0.0)))
        variance = max(target, variance)
        response = _response(method, *hessian_eigenvalues(*hessian_from_smoothed(level)), sigma, beta, gamma)
        best = torch.maximum(best, response)
    return best.reshape(shape)
