"""The MAE / VasoMIM augmentation crop as a MONAI dictionary transform.

``RandResizedCropd`` is torchvision's ``RandomResizedCrop`` for several keys at once: a crop of
``scale`` (0.2-1) of the frame's area with an aspect ratio log-uniform in ``ratio`` (3/4-4/3),
resized to ``size``; every key gets the same box, each its own interpolation (bicubic for the
image, nearest for a binary prior, as the official VasoMIM dataset does).

Why not MONAI's: ``RandSpatialCropd`` / ``RandScaleCropd`` draw each side independently
(uniform side lengths, not a uniform area with a log-uniform aspect ratio), and MONAI has no crop
and resize in one step; torchvision's transform draws from torch's global generator and works on
one image, so it neither shares a box across keys nor follows MONAI's ``set_random_state``.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_tensor, ensure_tuple, ensure_tuple_rep

# torch's "nearest" picks the source pixel by floor(dst * scale); "nearest-exact" by pixel
# centres, as PIL's NEAREST (the official pipeline resizes PIL images)
INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact", "area": "area"}


class RandResizedCropd(Randomizable, MapTransform):
    """Random resized crop, the same box for every key.

    Args:
        keys: keys of [C, H, W] images of the same spatial size.
        size: output size (int or (height, width)).
        scale: range of the crop's share of the frame's area.
        ratio: range of the crop's width / height, drawn log-uniformly.
        mode: interpolation per key: "bicubic" (antialiased and clipped to the frame's value
            range, as PIL's bicubic), "bilinear" (antialiased), "nearest", "area".
        attempts: draws before falling back to the central crop at the nearest allowed ratio.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: Union[int, Sequence[int]],
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        mode: Union[str, Sequence[str]] = "bicubic",
        attempts: int = 10,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.size = tuple(int(s) for s in ensure_tuple_rep(size, 2))
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not (0.0 < self.scale[0] <= self.scale[1] <= 1.0):
            raise ValueError(f"scale must be 0 < min <= max <= 1, got {self.scale}")
        if not (0.0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must be 0 < min <= max, got {self.ratio}")
        self.mode = ensure_tuple_rep(ensure_tuple(mode)[0], len(self.keys)) if len(ensure_tuple(mode)) == 1 else ensure_tuple(mode)
        for m in self.mode:
            if m not in INTERPOLATION:
                raise ValueError(f"mode must be one of {sorted(INTERPOLATION)}, got {m!r}")
        self.attempts = int(attempts)
        self.box: Tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, height, width

    def randomize(self, height: int, width: int) -> None:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.attempts):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                self.box = (int(self.R.randint(0, height - h + 1)), int(self.R.randint(0, width - w + 1)), h, w)
                return
        # no draw fitted: the whole frame, cut to the nearest allowed aspect ratio, centred
        frame_ratio = width / height
        if frame_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif frame_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        self.box = ((height - h) // 2, (width - w) // 2, h, w)

    def crop_resize(self, image, mode: str):
        """[C, H, W] -> [C, *size]: the current box, resized with ``mode``."""
        t = convert_to_tensor(image, track_meta=False)
        top, left, h, w = self.box
        crop = t[None, :, top : top + h, left : left + w].float()
        kwargs = {"antialias": True, "align_corners": False} if mode in ("bicubic", "bilinear") else {}
        out = F.interpolate(crop, size=self.size, mode=INTERPOLATION[mode], **kwargs)[0]
        if mode == "bicubic":  # cubic overshoot stays within the frame's range, as PIL clips to uint8
            out = out.clamp(t.min().float(), t.max().float())
        out = out.to(t.dtype) if t.is_floating_point() else out
        return MetaTensor(out, meta=dict(image.meta)) if isinstance(image, MetaTensor) else out

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        self.randomize(*d[first].shape[-2:])
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.crop_resize(d[key], mode)
        return d
