"""Image/mask folder pairs: DCA1 / 134XCA (``N.pgm`` + ``N_gt.pgm``, or this project's copy with
``images/tr_NN.png`` + ``masks/tr_NN.png``), XCAD-style ``images/`` + ``masks/`` pairs, any two
folders matched by file stem, and unlabeled frame folders."""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from ..errors import AngioDataError
from ..readers import RASTER_SUFFIXES, read_angiogram
from .common import SplitSpec, binary_mask, save_pair, with_validation_holdout, write_prepared

DCA1_MASK = re.compile(r"^(?P<stem>.+)_gt$")
# the author's own train/test arrangement, as renamed in ../shared/data/dca1 (its PROVENANCE.md)
DCA1_FIXED_SPLIT_STEM = re.compile(r"^(tr|te)_\d+$")
# DCA1 masks are {0, 255} but a few (tr_29, te_23, te_26) carry stray grey values
DCA1_MASK_THRESHOLD = 127


def _images_in(folder: str) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise AngioDataError(folder, "folder not found")
    files = [f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(RASTER_SUFFIXES)]
    by_stem: Dict[str, str] = {}
    for f in sorted(files):
        stem = os.path.splitext(os.path.basename(f))[0]
        if stem in by_stem:
            raise AngioDataError(f, f"two images share the stem {stem!r} ({os.path.basename(by_stem[stem])})")
        by_stem[stem] = f
    if not by_stem:
        raise AngioDataError(folder, f"no images ({', '.join(RASTER_SUFFIXES)}) in folder")
    return by_stem


def pair_by_stem(images: Dict[str, str], masks: Dict[str, str], where: str) -> List[tuple]:
    """(stem, image, mask) for matching stems; unmatched files on either side are an error."""
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images or lonely_masks:
        raise AngioDataError(where, f"unmatched pairs: images without masks {lonely_images[:5]}, masks without images {lonely_masks[:5]}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def _prepare_pairs(pairs: List[tuple], out: str, split: SplitSpec, val_fraction: float, test_fraction: float, seed: int, description: str, progress: bool,
                   mask_threshold: Optional[float] = None) -> str:
    items = []
    for stem, image_path, mask_path in tqdm(pairs, desc="image/mask pairs", disable=not progress):
        mask = binary_mask(mask_path, threshold=mask_threshold) if mask_path else None
        items.append(save_pair(out, stem, image_path, mask))
    return write_prepared(out, items, split, val_fraction, test_fraction, seed, description, {"0": "background", "1": "vessel"} if pairs and pairs[0][2] else None)


def prepare_pairs(images_dir: str, masks_dir: Optional[str], out: str, split: SplitSpec = None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, progress: bool = True,
                  mask_threshold: Optional[float] = None) -> str:
    """Images and masks matched by file stem (XCAD layout); no ``masks_dir`` -> unlabeled frames.
    Masks must be binary (0 and one value) unless ``mask_threshold`` is given: foreground =
    value > threshold (masks with stray grey values, e.g. DCA1's te_23: 0, 1, 2, 4, 255)."""
    images = _images_in(images_dir)
    if masks_dir is None:
        pairs = [(stem, path, None) for stem, path in sorted(images.items())]
    else:
        pairs = pair_by_stem(images, _images_in(masks_dir), f"{images_dir} + {masks_dir}")
    described = f"pairs from {images_dir} and {masks_dir}" + (f"; masks thresholded at > {mask_threshold:g}" if masks_dir and mask_threshold is not None else "")
    return _prepare_pairs(pairs, out, split, val_fraction, test_fraction, seed, described, progress, mask_threshold)


def prepare_dca1(root: str, out: str, split: SplitSpec = None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> str:
    """DCA1 / 134XCA, either as distributed (``N.pgm`` with its ground truth ``N_gt.pgm`` in one
    folder) or as ``images/`` + ``masks/`` with identical names (../shared/data/dca1).

    Masks are thresholded at > 127 (stray grey values in a few DCA1 masks). With no ``split``
    and the fixed-split names ``tr_NN`` / ``te_NN``, the packaged ``dca1`` split is used: test =
    the 40 te_*, validation = a seeded ``val_fraction`` hash hold-out of the 40 tr_*, training
    = the rest (``test_fraction`` is then unused)."""
    if os.path.isdir(os.path.join(root, "images")) and os.path.isdir(os.path.join(root, "masks")):
        pairs = pair_by_stem(_images_in(os.path.join(root, "images")), _images_in(os.path.join(root, "masks")), root)
        layout = "images/ + masks/"
    else:
        files = _images_in(root)
        masks = {m.group("stem"): path for stem, path in files.items() if (m := DCA1_MASK.match(stem))}
        images = {stem: path for stem, path in files.items() if not DCA1_MASK.match(stem)}
        pairs = pair_by_stem(images, masks, root)
        layout = "N.pgm + N_gt.pgm"
    note = ""
    if split is None and pairs and all(DCA1_FIXED_SPLIT_STEM.match(stem) for stem, _, _ in pairs):
        split = with_validation_holdout("dca1", val_fraction, seed)
        note = f"; packaged fixed split dca1 (test = te_*, validation = seed-{seed} {val_fraction:g} hold-out of tr_*)"
    items, stray = [], []
    for stem, image_path, mask_path in tqdm(pairs, desc="DCA1 pairs", disable=not progress):
        values = np.unique(read_angiogram(mask_path).frames)
        if not set(values.tolist()) <= {0.0, 255.0}:
            stray.append(stem)
        items.append(save_pair(out, stem, image_path, binary_mask(mask_path, threshold=DCA1_MASK_THRESHOLD)))
    note += f"; masks thresholded at > {DCA1_MASK_THRESHOLD}" + (f" (stray grey values in {', '.join(stray)})" if stray else "")
    return write_prepared(out, items, split, val_fraction, test_fraction, seed, f"DCA1 ({layout}) from {root}{note}", {"0": "background", "1": "vessel"})
