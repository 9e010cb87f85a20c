"""Between the viewers' layout and the segmenter's.

MONAI Label reads studies with ITK, as 3D Slicer and OHIF do: a frame is (W, H), a cine or a
DICOMweb series (W, H, T), with the geometry the viewer shows. The segmenter takes (T, H, W)
frames. The label goes back in the study's layout and geometry, so it lies on the image in the
viewer: (W, H) for a frame (written like the PNG it came from), (W, H, T) with the study's
affine for a cine.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

# ITU-R BT.601 luma, as angiokit's readers use for colour files
LUMA = torch.tensor([0.299, 0.587, 0.114])


class ITKFramesd(MapTransform):
    """(W, H), (W, H, 3) colour or (W, H, T) -> float (T, H, W); remembers the ITK layout."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            meta = dict(getattr(image, "meta", {}) or d.get(f"{key}_meta_dict", {}))
            x = torch.as_tensor(np.asarray(image), dtype=torch.float32)
            channel_dim = meta.get("original_channel_dim")
            if x.ndim == 3 and channel_dim is not None and not (isinstance(channel_dim, float) and np.isnan(channel_dim)) and x.shape[-1] in (3, 4):
                x = (x[..., :3] * LUMA).sum(-1)  # a colour frame, channels last
            if x.ndim not in (2, 3):
                raise ValueError(f"{meta.get('filename_or_obj', key)}: image of shape {tuple(x.shape)}; expected a frame or a cine")
            d[f"{key}_itk_ndim"] = x.ndim
            frames = x.T[None] if x.ndim == 2 else x.permute(2, 1, 0)
            if "affine" not in meta and hasattr(image, "affine"):
                meta["affine"] = image.affine
            d[key] = MetaTensor(frames.contiguous(), meta=meta)
        return d


class FramesToITKd(MapTransform):
    """[T, C, H, W] class probabilities -> the class map in the study's ITK layout (uint8), or,
    when the request asks for ``probabilities``, left as they are (uncertainty scoring)."""

    def __init__(self, keys: KeysCollection, ref_image: str = "image"):
        super().__init__(keys)
        self.ref_image = ref_image

    def __call__(self, data):
        d = dict(data)
        if d.get("probabilities"):
            return d
        ndim = d.get(f"{self.ref_image}_itk_ndim", 3)
        for key in self.key_iterator(d):
            classes = torch.as_tensor(d[key]).argmax(1).to(torch.uint8)  # [T, H, W]
            layout = classes[0].T if ndim == 2 else classes.permute(2, 1, 0)
            d[key] = MetaTensor(layout.contiguous(), affine=d[self.ref_image].affine)
            d.setdefault("result", {}).update({"frames": int(classes.shape[0]), "vessel_fraction": round(float((classes > 0).float().mean()), 5)})
        return d
