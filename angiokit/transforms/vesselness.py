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

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

SECOND_DIFF_VARIANCE = 1.0 / 6.0


@functools.lru_cache(maxsize=64)
def _gaussian_weights(sigma: float) -> tuple:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    k = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    return tuple(v / sum(k) for v in k)


def _blur_pass(x: torch.Tensor, k: tuple, dim: int) -> torch.Tensor:
    """One separable pass along ``dim``: symmetric edges, then a weighted sum of shifted views."""
    r, size = (len(k) - 1) // 2, x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, r).flip(dim), x, x.narrow(dim, size - r, r).flip(dim)], dim=dim)
    out = padded.narrow(dim, 0, size) * k[0]
    for i in range(1, len(k)):
        out.add_(padded.narrow(dim, i, size), alpha=k[i])
    return out


def _blur_pass_adjoint(grad: torch.Tensor, k: tuple, dim: int) -> torch.Tensor:
    """The transpose of ``_blur_pass``: spread each output's gradient over its taps, then fold
    the gradients of the mirrored edge pixels back onto the pixels they copy."""
    r, size = (len(k) - 1) // 2, grad.shape[dim]
    shape = list(grad.shape)
    shape[dim] = size + 2 * r
    spread = grad.new_zeros(shape)
    for i in range(len(k)):
        spread.narrow(dim, i, size).add_(grad, alpha=k[i])
    out = spread.narrow(dim, r, size).clone()
    out.narrow(dim, 0, r).add_(spread.narrow(dim, 0, r).flip(dim))
    out.narrow(dim, size - r, r).add_(spread.narrow(dim, size + r, r).flip(dim))
    return out


class _BlurPass(torch.autograd.Function):
    """``_blur_pass`` with its transpose as the backward. Autograd's own backward of the shifted
    views allocates and zero-fills a full-size gradient per tap: this one is as cheap as the
    forward pass (the consistency loss differentiates the vesselness in every training step)."""

    @staticmethod
    def forward(ctx, x, k, dim):
        ctx.k, ctx.dim = k, dim
        return _blur_pass(x, k, dim)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return _blur_pass_adjoint(grad, ctx.k, ctx.dim), None, None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, 1, H, W], symmetric edges (identity for sigma ~ 0).

    Each pass is a weighted sum of shifted views (one fused multiply-add per tap): no
    transposes or im2col copies, which dominate a 1-channel ``conv2d`` at the kernel sizes the
    cascade needs (7-15 taps). Its gradient is the transposed pass (``_BlurPass``).
    """
    if sigma < 0.05:
        return x
    k = _gaussian_weights(float(sigma))  # host numbers: reading a device kernel back would stall a GPU step
    r = (len(k) - 1) // 2
    h, w = x.shape[-2:]
    if r >= min(h, w):
        raise ValueError(f"image of {h}x{w} pixels is too small for a Gaussian of sigma {sigma:.2f}")
    for dim in (-1, -2):
        x = _BlurPass.apply(x, k, dim)
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


def _hessian_adjoint(g_xx: torch.Tensor, g_xy: torch.Tensor, g_yy: torch.Tensor) -> torch.Tensor:
    """The transpose of ``hessian_from_smoothed``: gradients of (Hxx, Hxy, Hyy) -> gradient of the
    smoothed image (stencils spread onto the padded grid, the replicated edges folded back)."""
    n, c, h, w = g_xx.shape
    gp = g_xx.new_zeros(n, c, h + 2, w + 2)
    gp[..., 1:-1, 2:] += g_xx
    gp[..., 1:-1, :-2] += g_xx
    gp[..., 2:, 1:-1] += g_yy
    gp[..., :-2, 1:-1] += g_yy
    gp[..., 1:-1, 1:-1] -= 2 * (g_xx + g_yy)
    q = 0.25 * g_xy
    gp[..., 2:, 2:] += q
    gp[..., 2:, :-2] -= q
    gp[..., :-2, 2:] -= q
    gp[..., :-2, :-2] += q
    gp[..., 1, :] += gp[..., 0, :]  # replicate padding: each padded row / column copies the edge
    gp[..., -2, :] += gp[..., -1, :]
    gp[..., :, 1] += gp[..., :, 0]
    gp[..., :, -2] += gp[..., :, -1]
    return gp[..., 1:-1, 1:-1].contiguous()


class _SatoResponse(torch.autograd.Function):
    """sigma^2 * max(largest Hessian eigenvalue, 0) of a smoothed image, with its gradient written
    out: autograd's backward of the stencils' shifted views zero-fills a full-size gradient per
    view, and this runs in every training step (the consistency loss). Same forward values as
    ``_response("sato", ...)``."""

    @staticmethod
    def forward(ctx, level, sigma):
        hxx, hxy, hyy = hessian_from_smoothed(level)
        half_diff = 0.5 * (hxx - hyy)
        radius = torch.sqrt(half_diff * half_diff + hxy * hxy + 1e-10)
        l_big = 0.5 * (hxx + hyy) + radius
        ctx.sigma2 = sigma**2
        ctx.save_for_backward(half_diff / radius, hxy / radius, l_big >= 0)
        return ctx.sigma2 * l_big.clamp_min(0.0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        d_diff, d_xy, positive = ctx.saved_tensors
        g = grad * positive * ctx.sigma2  # d response / d l_big
        # l_big = (hxx + hyy) / 2 + sqrt(((hxx - hyy) / 2)^2 + hxy^2)
        return _hessian_adjoint(g * (0.5 + 0.5 * d_diff), g * d_xy, g * (0.5 - 0.5 * d_diff)), None


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
        if method == "sato":
            response = _SatoResponse.apply(level, sigma)
        else:
            response = _response(method, *hessian_eigenvalues(*hessian_from_smoothed(level)), sigma, beta, gamma)
        # (a where: its backward is two selects, torch.maximum's splits ties with extra passes)
        best = torch.where(response > best, response, best)
    return best.reshape(shape)
