"""MONAI transforms that add a vesselness prior and a coarse vessel mask to a sample.

    VesselnessPriord(keys="image")                       -> sample["prior"], [1, H, W] in [0, 1]
    CoarseVesselMaskd(keys="prior")                      -> sample["coarse_mask"], [1, H, W] {0, 1}

Both run on whatever device the image tensor is on, so they can sit in a GPU training step.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

from .coarse_mask import coarse_vessel_mask
from .vesselness import vesselness


class VesselnessPrior(Transform):
    """[C, H, W] frame -> [1, H, W] vesselness (channels averaged first), scaled to [0, 1] by its
    maximum when ``normalize`` (so priors of different frames are comparable weights)."""

    backend = ["torch", "numpy"]

    def __init__(self, sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0), method: str = "sato", black_ridges: bool = True, normalize: bool = True):
        self.sigmas, self.method, self.black_ridges, self.normalize = tuple(sigmas), method, black_ridges, normalize

    def __call__(self, img):
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if t.ndim != 3:
            raise ValueError(f"VesselnessPrior expects a channel-first [C, H, W] frame, got shape {tuple(t.shape)}")
        prior = vesselness(t.mean(0, keepdim=True)[None], self.sigmas, self.method, self.black_ridges)[0]
        if self.normalize:
            prior = prior / prior.amax().clamp_min(1e-12)
        out, *_ = convert_to_dst_type(prior, img, dtype=torch.float32)
        return out


class CoarseVesselMask(Transform):
    """[1, H, W] prior -> [1, H, W] {0, 1} mask: top ``100 - percentile`` % and, with
    keep="strongest", only the connected region holding the maximum."""

    backend = ["torch", "numpy"]

    def __init__(self, percentile: float = 92.0, keep: str = "strongest"):
        self.percentile, self.keep = percentile, keep

    def __call__(self, prior):
        t = convert_to_tensor(prior, track_meta=False)
        mask = coarse_vessel_mask(t, self.percentile, self.keep).to(torch.float32)
        out, *_ = convert_to_dst_type(mask, prior, dtype=torch.float32)
        return out


class VesselnessPriord(MapTransform):
    """Dictionary version: reads ``keys`` (one image key), writes ``prior_key``."""

    def __init__(self, keys: KeysCollection, prior_key: str = "prior", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.prior_key = prior_key
        self.transform = VesselnessPrior(**kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.prior_key] = self.transform(d[key])
        return d


class CoarseVesselMaskd(MapTransform):
    """Dictionary version: reads ``keys`` (the prior), writes ``mask_key``."""

    def __init__(self, keys: KeysCollection = "prior", mask_key: str = "coarse_mask", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.transform = CoarseVesselMask(**kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.mask_key] = self.transform(d[key])
        return d
