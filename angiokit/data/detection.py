"""Data for stenosis detection: box datalists (``apps.prepare arcade_s_boxes`` / ``coco_boxes`` /
``voc_boxes`` / ``csv_boxes``) and the box transforms MONAI lacks.

A detection datalist entry is ``{"image": path, "box": [[x1, y1, x2, y2], ...], "label": [0, ...]}``
with boxes in pixels of the image as stored, x = column, y = row (COCO order). MONAI's detection
stack orders box coordinates by array axis ([row, column] for a [C, H, W] frame), so the
pipelines convert once after loading (``BoxesToArrayAxesd``) and the writers convert back; every
box inside the bundle (transforms, detector, metrics) is in array-axis order.
"""

from __future__ import annotations

from typing import Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.apps.detection.transforms.array import ZoomBox
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .datalist import read_entries
from .errors import AngioDataError

BOX_KEYS = ("box", "label")
BOX_MODE = "xyxy pixels: x = column, y = row, origin at the top-left corner of the top-left pixel (COCO order)"
"""How boxes are written in the datalists and in every file the bundle writes."""


def detection_items(datalists: Optional[str], splits: Sequence[str]) -> List[dict]:
    """Entries of ``splits`` from comma-separated detection datalists, image paths made absolute.
    An entry without ``box`` / ``label``, or with lists of different lengths, is an error naming
    the datalist; no datalist at all is an error too (detection needs boxes: there is no
    synthetic default)."""
    paths = [p.strip() for p in str(datalists or "").split(",") if p.strip()]
    if not paths:
        raise AngioDataError("<no datalist>", "stenosis detection needs a box datalist: give --dataset_dir (a folder with datalist.json from apps.prepare arcade_s_boxes / coco_boxes / voc_boxes / csv_boxes) or --datalist")
    items: List[dict] = []
    for path in paths:
        entries = read_entries(path, splits, required=("image",) + BOX_KEYS, allow_empty=True, path_keys=("image",))
        for e in entries:
            if len(e["box"]) != len(e["label"]):
                raise AngioDataError(path, f"{e['image']}: {len(e['box'])} boxes but {len(e['label'])} labels")
            if any(len(b) != 4 for b in e["box"]):
                raise AngioDataError(path, f"{e['image']}: boxes must be [x1, y1, x2, y2]")
        items += [{"image": e["image"], "box": [list(map(float, b)) for b in e["box"]], "label": [int(v) for v in e["label"]]} for e in entries]
    if not items:
        raise AngioDataError(str(datalists), f"no entries in {list(splits)} in any of the datalists")
    return items


def swap_box_axes(boxes):
    """[N, 4] boxes [a1, b1, a2, b2] -> [b1, a1, b2, a2]: (x = column, y = row) <-> array-axis order.
    Its own inverse."""
    return boxes[..., [1, 0, 3, 2]]


class BoxesToArrayAxesd(MapTransform):
    """Datalist boxes (x = column first, COCO order) -> MONAI's array-axis order (row first), as
    float32 [N, 4] tensors (an image with no box gets [0, 4]); labels -> int64 [N]. By hand:
    MONAI's box modes fix the corner / size layout, not which image axis comes first."""

    def __init__(self, box_keys: KeysCollection = "box", label_keys: KeysCollection = "label", allow_missing_keys: bool = False):
        super().__init__(box_keys, allow_missing_keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)

    def __call__(self, data: Mapping[Hashable, object]):
        d = dict(data)
        for key in self.key_iterator(d):
            boxes = torch.as_tensor(np.asarray(d[key], dtype=np.float32).reshape(-1, 4))
            d[key] = swap_box_axes(boxes)
        for key in self.label_keys:
            if key in d:
                d[key] = torch.as_tensor(np.asarray(d[key], dtype=np.int64).reshape(-1))
        return d


def resize_frames(frames: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size]: area averaging when both sides shrink (a 512 frame to the
    network's 256), else bilinear with antialiasing (a side that shrinks does not alias)."""
    size = tuple(int(s) for s in size)
    if all(t <= s for t, s in zip(size, frames.shape[-2:])):
        return F.interpolate(frames, size=size, mode="area")
    return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)


class ResizeWithBoxesd(MapTransform):
    """Resize a [C, H, W] frame to ``spatial_size`` and scale its (array-axis order) boxes with it.
    By hand: MONAI's ``ZoomBoxd`` takes a fixed zoom factor, not a target size; the boxes are
    scaled by MONAI's ``ZoomBox``."""

    def __init__(self, image_key: str = "image", box_keys: KeysCollection = "box", spatial_size=512, allow_missing_keys: bool = False):
        super().__init__(box_keys, allow_missing_keys)
        self.image_key = image_key
        self.spatial_size = (int(spatial_size),) * 2 if isinstance(spatial_size, int) else tuple(int(s) for s in spatial_size)

    def __call__(self, data: Mapping[Hashable, object]):
        d = dict(data)
        image = d[self.image_key]
        size = tuple(image.shape[-2:])
        if size != self.spatial_size:
            zoom = [t / s for t, s in zip(self.spatial_size, size)]
            resized = resize_frames(torch.as_tensor(image)[None].float(), self.spatial_size)[0]
            d[self.image_key] = MetaTensor(resized, meta=dict(getattr(image, "meta", {}))) if isinstance(image, MetaTensor) else resized
            for key in self.key_iterator(d):
                d[key] = ZoomBox(zoom=zoom)(d[key], src_spatial_size=size)
        return d


__all__ = ["BOX_KEYS", "BOX_MODE", "BoxesToArrayAxesd", "ResizeWithBoxesd", "detection_items", "resize_frames", "swap_box_axes"]
