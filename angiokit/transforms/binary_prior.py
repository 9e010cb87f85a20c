"""The official VasoMIM vessel prior: a binary map, batched on any device, without host syncs.

The official recipe (XA-SSL ``frangi_filter.py``, run offline on every stored frame):

    Sato vesselness (sigmas 1-4, dark ridges) of the uint8 frame, truncated to uint8
    -> a ``border`` of 20 px set to 0
    -> pixels at or above the 92nd percentile (and above 0)
    -> the 4-connected region of them grown from the maximum: a binary map.

``binary_vessel_prior`` does the same on ``[N, 1, H, W]`` frames in grey levels (0-255). Two
deliberate departures: responses above 255 saturate at 255 (numpy's uint8 cast wraps them
around, an accident of the cast), and the percentile is torch's linear one (numpy's default).

The region is grown by connected-component labelling on the device (``grow_from_maximum``):
every pixel of the mask starts with its own index as label; each round takes the smallest label
of the 4 neighbours, hands it to the pixel the label points at (hooking, as in Shiloach-Vishkin)
and then follows pointers twice (pointer jumping). Labels only fall and always name a pixel of
the same component, so they settle on the component's smallest index; information travels
along pointer chains that double each round, so a few rounds (about log2 of the path length)
suffice. A fixed number of rounds keeps the step free of host syncs (no convergence test reads
a value back); ``rounds=None`` iterates to convergence (offline, where a sync is free).
Growing by one 4-neighbour max-pool per pixel of path length would need hundreds of rounds.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .vesselness import vesselness

DEFAULT_ROUNDS = 8
"""Rounds of ``grow_from_maximum`` in a training step, enough for a 224-px image: synthetic
angiograms converge in 6, a serpentine path of 17,000 pixels and a maze filling the image (a
tree of 24,641 pixels) in 8 (tested). A branch not reached in time is left out of the prior."""


def _neighbour_min(labels: torch.Tensor, h: int, w: int, outside: int) -> torch.Tensor:
    """[B, H*W] labels -> the smallest label among each pixel's 4 neighbours."""
    grid = F.pad(labels.view(-1, h, w), (1, 1, 1, 1), value=outside)
    horizontal = torch.minimum(grid[:, 1:-1, :-2], grid[:, 1:-1, 2:])
    vertical = torch.minimum(grid[:, :-2, 1:-1], grid[:, 2:, 1:-1])
    return torch.minimum(horizontal, vertical).reshape(labels.shape)


def grow_from_maximum(candidates: torch.Tensor, seeds: torch.Tensor, rounds: Optional[int] = DEFAULT_ROUNDS) -> torch.Tensor:
    """The 4-connected region of ``candidates`` that holds each image's seed.

    Args:
        candidates: [B, H, W] bool.
        seeds: [B] flat (row-major) index of each image's seed; a seed outside ``candidates``
            gives an empty region.
        rounds: labelling rounds (sync-free); None: until nothing changes (syncs every round).

    Returns:
        [B, H, W] bool.
    """
    b, h, w = candidates.shape
    n = h * w
    inside = candidates.reshape(b, n)
    outside = n  # label of background pixels; index n is a sentinel slot that keeps it
    index = torch.arange(n, device=candidates.device).expand(b, n)
    labels = torch.where(inside, index, outside)
    labels = torch.cat([labels, labels.new_full((b, 1), outside)], dim=1)
    done = 0
    while rounds is None or done < rounds:
        before = labels.clone() if rounds is None else None
        smallest = torch.where(inside, torch.minimum(_neighbour_min(labels[:, :n], h, w, outside), labels[:, :n]), outside)
        labels.scatter_reduce_(1, labels[:, :n].clone(), smallest, reduce="amin")  # hook the root
        labels[:, :n] = torch.minimum(labels[:, :n], smallest)
        labels = labels.gather(1, labels)  # pointer jumping, twice
        labels = labels.gather(1, labels)
        done += 1
        if before is not None and torch.equal(before, labels):
            break
    seed_label = labels.gather(1, seeds.view(b, 1).long())
    return ((labels[:, :n] == seed_label) & inside).view(b, h, w)


def binary_prior_from_vesselness(
    response: torch.Tensor, border: int = 20, percentile: float = 92.0, rounds: Optional[int] = DEFAULT_ROUNDS
) -> torch.Tensor:
    """[N, 1, H, W] Sato response in grey levels (of a 0-255 frame) -> [N, 1, H, W] float {0, 1}
    official prior: truncated to integers, border zeroed, top percentile, region from the maximum."""
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    n, _, h, w = response.shape
    if 2 * border >= min(h, w):
        raise ValueError(f"a border of {border} px leaves nothing of a {h} x {w} frame")
    v = response.float().floor().clamp_(0.0, 255.0)  # the uint8 cast of the official filter
    if border > 0:
        keep = torch.zeros(1, 1, h, w, dtype=torch.bool, device=v.device)
        keep[..., border : h - border, border : w - border] = True
        v = v * keep
    flat = v.reshape(n, h * w)
    threshold = torch.quantile(flat, percentile / 100.0, dim=1, keepdim=True)
    candidates = (flat >= threshold) & (flat > 0)  # region growing walks non-zero pixels only
    seeds = flat.argmax(1)  # the first maximum, as numpy's argmax; outside only when all are 0
    return grow_from_maximum(candidates.view(n, h, w), seeds, rounds).view(n, 1, h, w).float()


def binary_vessel_prior(
    frames: torch.Tensor,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
    border: int = 20,
    percentile: float = 92.0,
    grey_levels: float = 255.0,
    rounds: Optional[int] = DEFAULT_ROUNDS,
) -> torch.Tensor:
    """Official binary vessel prior of [N, 1, H, W] frames (channels averaged first).

    Args:
        frames: [N, C, H, W]; intensities are multiplied by ``grey_levels`` (255 for frames in
            [0, 1]; 1 for frames already in 0-255), as the official filter sees uint8 frames.
        sigmas, border, percentile: the official 1-4, 20 px and 92.
        rounds: see ``grow_from_maximum`` (None: exact, with host syncs).

    Returns:
        [N, 1, H, W] float {0, 1}.
    """
    response = vesselness(frames.float().mean(1, keepdim=True), sigmas) * float(grey_levels)  # Sato is linear
    return binary_prior_from_vesselness(response, border, percentile, rounds)


def border_for(image_size: int, border: int = 20, frame_size: int = 512) -> int:
    """The official border of a ``frame_size`` frame, in pixels of an ``image_size`` image."""
    return int(math.floor(border * image_size / frame_size + 0.5))


__all__ = ["DEFAULT_ROUNDS", "binary_prior_from_vesselness", "binary_vessel_prior", "border_for", "grow_from_maximum"]
