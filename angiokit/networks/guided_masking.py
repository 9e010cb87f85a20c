"""Anatomy-guided masking for VasoMIM, batched and free of host syncs.

Per image: the guidance map becomes a per-patch vessel probability p (each patch's share of the
vessel signal). Of the ``num_mask`` masked patches, ``k = int(alpha * num_mask)`` (rounded down,
as the official code) are drawn from p without replacement, the rest uniformly from the
remaining patches; images without vessel signal are masked uniformly. Every image gets exactly ``num_mask`` masked patches.

Weighted sampling without replacement by the exponential race (Efraimidis & Spirakis 2006;
the Gumbel-top-k trick): with E_i ~ Exp(1), the k patches with the smallest E_i / p_i are
distributed exactly as k successive ``torch.multinomial`` draws without replacement. The
uniform remainder then takes the lowest uniform keys among the other patches. Two partial
top-k selections per batch, all on the device; the official code loops over the batch with one ``multinomial`` and
several host syncs per image (``reference_guided_masking`` below reproduces that for tests and
benchmarks).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


GUIDED_OFFSET = 2**30


def patch_probabilities(guidance: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, 1, H, W] non-negative guidance -> [B, N] share of the signal per patch (row-major
    patch order, as MONAI's patch embedding flattens them); all-zero rows stay zero."""
    if guidance.ndim != 4 or guidance.shape[1] != 1:
        raise ValueError(f"guidance must be [B, 1, H, W], got {tuple(guidance.shape)}")
    per_patch = F.avg_pool2d(guidance.float().clamp_min(0.0), patch_size).flatten(1)
    total = per_patch.sum(1, keepdim=True)
    return per_patch / total.clamp_min(1e-12)


def guided_masking(
    probs: torch.Tensor, num_mask: int, alpha: float, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Choose masked patches for a batch.

    Args:
        probs: [B, N] per-patch probabilities (rows sum to 1, or are all zero for no signal).
        num_mask: patches to mask per image.
        alpha: fraction of ``num_mask`` drawn from ``probs`` (the rest uniformly).

    Returns:
        keep [B, N - num_mask] indices of the visible patches (unordered), and
        mask [B, N] with 1 = masked (MONAI's ``MaskedAutoEncoderViT`` convention).
    """
    b, n = probs.shape
    if not 0 < num_mask < n:
        raise ValueError(f"num_mask must be in (0, {n}), got {num_mask}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    k_guided = int(alpha * num_mask)
    # integer uniform keys (top-k on int32 is faster than on floats): the lowest num_mask are masked
    priority = torch.randint(0, GUIDED_OFFSET, (b, n), dtype=torch.int32, device=probs.device, generator=generator)
    if k_guided > 0:
        # exponential race: the k largest log(U) / p are the k smallest E / p, E = -log(U) ~ Exp(1)
        race = torch.rand(b, n, device=probs.device, generator=generator).log_().div_(probs)
        winners, index = race.topk(k_guided, dim=1, sorted=False)
        # winners go below every uniform key; zero-probability patches (race = -inf) never win,
        # so images without signal (or with fewer than k vessel patches) fall back to uniform
        priority.scatter_add_(1, index, torch.isfinite(winners).to(torch.int32).mul_(-GUIDED_OFFSET))
    keep = priority.topk(n - num_mask, dim=1, sorted=False).indices
    mask = torch.ones(b, n, dtype=torch.int, device=probs.device).scatter_(1, keep, 0)
    return keep, mask


def reference_guided_masking(probs: torch.Tensor, num_mask: int, alpha: float):
    """The official-style per-image loop (one ``multinomial``, host syncs and a handful of small
    tensor ops per image); for tests and as the benchmark baseline. Same outputs as
    ``guided_masking``."""
    b, n = probs.shape
    k_guided = int(alpha * num_mask)
    keep = torch.empty(b, n - num_mask, dtype=torch.long, device=probs.device)
    for i in range(b):
        p = probs[i]
        k = min(k_guided, int((p > 0).sum().item()))  # host sync
        guided = torch.multinomial(p, k, replacement=False) if k > 0 else torch.empty(0, dtype=torch.long, device=p.device)
        remaining = torch.ones(n, dtype=torch.bool, device=p.device)
        remaining[guided] = False
        candidates = remaining.nonzero().squeeze(1)  # host sync (data-dependent shape)
        shuffled = candidates[torch.randperm(len(candidates), device=p.device)]
        keep[i] = shuffled[num_mask - k :]
    mask = torch.ones(b, n, dtype=torch.int, device=probs.device).scatter_(1, keep, 0)
    return keep, mask
