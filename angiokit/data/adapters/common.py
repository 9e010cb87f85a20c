"""Shared pieces of the dataset adapters: copying frames and masks into the prepared layout,
checking mask values, and resolving fixed splits.

Prepared layout of OUT:
    images/<stem>.png              grey PNG, 8-bit (16-bit where the source needs it)
    labels/<stem>.png              binary vessel (or stenosis) mask, values 0/255
    labels_multiclass/<stem>.png   class index per pixel (ARCADE segments), where available
    datalist.json                  MONAI Decathlon lists, paths relative to OUT
"""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Dict, Iterable, List, Optional, Union

import numpy as np

from ..datalist import SPLITS as SPLIT_NAMES, assign_splits, build_datalist, write_datalist
from ..errors import AngioDataError
from ..readers import read_angiogram
from ..writers import write_mask_png, write_png

SplitSpec = Union[None, str, Dict[str, List[str]]]
PATH_KEYS = ("image", "label", "label_multiclass", "prior", "coarse_mask")


def load_split(split: SplitSpec) -> Optional[Dict[str, List[str]]]:
    """None, a packaged split name ("xcad_samples", "arcade_stenosis"), a JSON path, or a dict.
    The split names themselves ("training", "validation", "test") are handled by
    ``case_splits``: every case in that split."""
    if split is None or isinstance(split, dict):
        return split
    if os.path.isfile(split):
        path = split
        with open(path) as f:
            doc = json.load(f)
    else:
        try:
            doc = json.loads(resources.files("angiokit.data.splits").joinpath(f"{split}.json").read_text())
        except FileNotFoundError:
            names = sorted(p.name[:-5] for p in resources.files("angiokit.data.splits").iterdir() if p.name.endswith(".json"))
            raise AngioDataError(split, f"no such split file or packaged split; packaged: {names}") from None
    return {k: [str(v) for v in doc[k]] for k in ("training", "validation", "test") if k in doc}


def split_groups(split: SplitSpec, key: str = "duplicates_in_training") -> List[List[str]]:
    """Groups of cases a packaged or JSON split file says belong together (e.g. byte-identical
    images), [] where it names none."""
    if split is None or isinstance(split, dict) or split in SPLIT_NAMES:
        return []
    if os.path.isfile(split):
        with open(split) as f:
            doc = json.load(f)
    else:
        doc = json.loads(resources.files("angiokit.data.splits").joinpath(f"{split}.json").read_text())
    return [[str(c) for c in group] for group in doc.get(key, [])]


def with_validation_holdout(split: SplitSpec, val_fraction: float, seed: int, keep_in_training: Iterable[Iterable[str]] = ()) -> Dict[str, List[str]]:
    """A fixed split with training and test but no validation -> the same split with a seeded
    hash fraction of training moved to validation (test untouched). Cases of a group in
    ``keep_in_training`` (duplicated images) stay in training, so no copy of a validation image
    is trained on. A split that already has a validation list is returned unchanged."""
    fixed = load_split(split)
    if fixed is None or "training" not in fixed:
        raise AngioDataError(str(split), "a fixed split with a 'training' list is needed to hold out validation from it")
    if fixed.get("validation") or val_fraction <= 0:
        return fixed
    pinned = {c for group in keep_in_training for c in group}
    movable = [c for c in fixed["training"] if c not in pinned]
    hashed = assign_splits(movable, val_fraction, 0.0, seed)
    validation = [c for c in movable if hashed[c] == "validation"]
    held = set(validation)
    return {**fixed, "training": [c for c in fixed["training"] if c not in held], "validation": validation}


def case_splits(cases: Iterable[str], split: SplitSpec, val_fraction: float, test_fraction: float, seed: int) -> Dict[str, str]:
    """case -> split name, from a fixed split (every case must be listed) or by hash."""
    cases = sorted(set(cases))
    if split in SPLIT_NAMES:  # `--split test`: the whole folder is one split (an external test set)
        return {c: split for c in cases}
    fixed = load_split(split)
    if fixed is None:
        return assign_splits(cases, val_fraction, test_fraction, seed)
    where = {c: name for name, members in fixed.items() for c in members}
    missing = [c for c in cases if c not in where]
    if missing:
        raise AngioDataError(str(split), f"{len(missing)} case(s) are in no split, e.g. {missing[:5]}")
    return {c: where[c] for c in cases}


def binary_mask(path: str, expected_shape=None, threshold: Optional[float] = None) -> np.ndarray:
    """Read a binary mask; values must be {0} or {0, v} for one v > 0 (0/1, 0/255, ...).

    threshold: foreground = value > threshold instead, for a distribution whose masks carry a
    few stray grey values (DCA1: > 127); no value check then."""
    frames = read_angiogram(path).frames
    if frames.shape[0] != 1:
        raise AngioDataError(path, f"mask has {frames.shape[0]} frames; expected one")
    mask = frames[0]
    if threshold is not None:
        if expected_shape is not None and mask.shape != tuple(expected_shape):
            raise AngioDataError(path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image is {expected_shape[0]}x{expected_shape[1]}")
        return mask > threshold
    values = np.unique(mask)
    if len(values) > 2 or values.min() < 0 or (len(values) == 2 and values[0] != 0):
        shown = values[:8].tolist()
        raise AngioDataError(path, f"mask values {shown}{'...' if len(values) > 8 else ''} are not binary; expected 0 and one foreground value (1 or 255), "
                                   f"or give a threshold (apps.prepare --mask_threshold T: foreground = value > T, e.g. 127 for 0/255 masks)")
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise AngioDataError(path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image is {expected_shape[0]}x{expected_shape[1]}")
    return mask > 0


def copy_frame(src: str, dst: str, frame="max_contrast") -> np.ndarray:
    """One frame of any readable file -> grey PNG (8-bit if it fits, else 16-bit); returns it."""
    pixels = read_angiogram(src, frames=frame).frames[0]
    pixels = np.clip(np.rint(pixels), 0, 65535)
    write_png(dst, pixels.astype(np.uint8 if pixels.max() <= 255 else np.uint16))
    return pixels


def write_prepared(out: str, items: List[dict], split: SplitSpec, val_fraction: float, test_fraction: float, seed: int, description: str, labels: Optional[dict] = None) -> str:
    """Write datalist.json for prepared items (paths under ``out``)."""
    splits = case_splits([it["case"] for it in items], split, val_fraction, test_fraction, seed)
    lists = build_datalist(items, out, path_keys=PATH_KEYS, splits=splits)
    extra = {"description": description}
    if labels:
        extra["labels"] = labels
    return write_datalist(os.path.join(out, "datalist.json"), lists, **extra)


def save_pair(out: str, stem: str, image_path: str, mask: Optional[np.ndarray]) -> dict:
    """Copy an image (and write its binary mask) into the prepared layout; returns the item."""
    image = copy_frame(image_path, os.path.join(out, "images", f"{stem}.png"))
    item = {"case": stem, "image": os.path.join(out, "images", f"{stem}.png"), "source": os.path.abspath(image_path)}
    if mask is not None:
        if mask.shape != image.shape:
            raise AngioDataError(image_path, f"image is {image.shape} but its mask is {mask.shape}")
        item["label"] = write_mask_png(os.path.join(out, "labels", f"{stem}.png"), mask)
    return item
