"""ARCADE (MICCAI 2023) as distributed: COCO JSON polygons + PNG frames.

Syntax task: 25 SYNTAX segment categories (names "1", "2", ..., "16c"); stenosis task: category
"stenosis". Each image gets a binary mask (union of the selected categories) and a multi-class
mask whose pixel value is the COCO category id (0 = background; later annotations are drawn over
earlier ones, in file order).

Polygons are filled with PIL's ``ImageDraw.polygon`` (interior and outline pixels), the
convention of the masks the ARCADE distributions carry: on the stenosis test split they agree
with the distributed masks at IoU >= 0.998 for every image (a test checks it).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Iterable, List, Optional

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..errors import AngioDataError, read_json
from ..writers import write_png
from .common import SplitSpec, save_pair, split_groups, with_validation_holdout, write_prepared


def load_coco(annotation_json: str) -> dict:
    coco = read_json(annotation_json, "COCO annotation file")
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise AngioDataError(annotation_json, f"not a COCO file: no '{key}' list")
    return coco


def rasterize_annotations(annotations: Iterable[dict], height: int, width: int, category_ids: Optional[set] = None) -> np.ndarray:
    """COCO polygon annotations -> [H, W] uint8 mask of category ids (0 = background)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for ann in annotations:
        if category_ids is not None and ann["category_id"] not in category_ids:
            continue
        segmentation = ann.get("segmentation") or []
        if isinstance(segmentation, dict):
            raise ValueError("RLE segmentations are not supported; ARCADE uses polygons")
        for poly in segmentation:
            xy = [tuple(p) for p in np.asarray(poly, dtype=np.float64).reshape(-1, 2)]
            if len(xy) >= 3:
                draw.polygon(xy, fill=int(ann["category_id"]), outline=int(ann["category_id"]))
    return np.asarray(canvas, dtype=np.uint8)


def _selected_category_ids(coco: dict, annotation_json: str, categories: Optional[List[str]]) -> set:
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    if categories is None:
        return set(names)
    unknown = sorted(set(map(str, categories)) - set(names.values()))
    if unknown:
        raise AngioDataError(annotation_json, f"unknown categories {unknown}; the file has {sorted(set(names.values()))}")
    return {i for i, n in names.items() if n in set(map(str, categories))}


def _arcade_items(images_dir: str, annotation_json: str, out: str, categories: Optional[List[str]], progress: bool, case_prefix: str = ""):
    """Rasterise one COCO file into ``out``; returns (items, coco, selected category ids).
    ``case_prefix`` keeps two splits that both name their files 1.png, 2.png, ... apart."""
    coco = load_coco(annotation_json)
    wanted = _selected_category_ids(coco, annotation_json, categories)
    by_image = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    items = []
    for info in tqdm(coco["images"], desc=f"ARCADE images {case_prefix}".strip(), disable=not progress):
        src = os.path.join(images_dir, info["file_name"])
        if not os.path.isfile(src):
            raise AngioDataError(src, f"image listed in {annotation_json} not found")
        stem = case_prefix + os.path.splitext(info["file_name"])[0]
        classes = rasterize_annotations(by_image[info["id"]], info["height"], info["width"])
        binary = np.isin(classes, list(wanted)) if classes.any() else np.zeros_like(classes, dtype=bool)
        item = save_pair(out, stem, src, binary)
        item["label_multiclass"] = write_png(os.path.join(out, "labels_multiclass", f"{stem}.png"), classes)
        items.append(item)
    return items, coco, wanted


def _labels(coco: dict) -> dict:
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    return {"0": "background", **{str(i): f"segment {n}" if n != "stenosis" else "stenosis" for i, n in sorted(names.items())}}


def prepare_arcade(
    images_dir: str,
    annotation_json: str,
    out: str,
    categories: Optional[List[str]] = None,
    split: SplitSpec = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Write images/, labels/ (binary, selected categories), labels_multiclass/ and datalist.json.

    categories: category names to put in the binary mask (default: all of them).
    """
    items, coco, wanted = _arcade_items(images_dir, annotation_json, out, categories, progress)
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    kept = ", ".join(sorted(names[i] for i in wanted))
    return write_prepared(out, items, split, val_fraction, test_fraction, seed, f"ARCADE from {annotation_json}; binary labels = {kept}; labels_multiclass = COCO category ids", _labels(coco))


def _split_root(root: str) -> tuple:
    """(images dir, the one COCO json under annotations/) of an ARCADE split folder."""
    images_dir, ann_dir = os.path.join(root, "images"), os.path.join(root, "annotations")
    if not os.path.isdir(images_dir):
        raise AngioDataError(images_dir, "folder not found; an ARCADE split folder holds images/ and annotations/<split>.json")
    found = sorted(f for f in os.listdir(ann_dir) if f.endswith(".json")) if os.path.isdir(ann_dir) else []
    if len(found) != 1:
        raise AngioDataError(ann_dir, f"expected exactly one COCO .json here, found {found}")
    return images_dir, os.path.join(ann_dir, found[0])


def prepare_arcade_s(train_root: str, test_root: str, out: str, split: SplitSpec = "arcade_s", val_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> str:
    """ARCADE-S (the VasoMIM paper's protocol): the stenosis train split (1,000) and test split
    (300), each a folder with images/ and annotations/<split>.json, -> one datalist.

    Binary labels (``label``) = the "stenosis" polygons rasterised (they match the distributed
    masks/). Case ids are ``train_<N>`` / ``test_<N>`` (both splits number their files from 1).
    test = the 300; validation = a seeded ``val_fraction`` hash hold-out of the 1,000 in which
    the byte-identical images the split file names stay in training; training = the rest."""
    train_images, train_json = _split_root(train_root)
    test_images, test_json = _split_root(test_root)
    train_items, coco, _ = _arcade_items(train_images, train_json, out, ["stenosis"], progress, "train_")
    test_items, _, _ = _arcade_items(test_images, test_json, out, ["stenosis"], progress, "test_")
    fixed = with_validation_holdout(split, val_fraction, seed, keep_in_training=split_groups(split))
    description = (f"ARCADE-S: training/validation from {train_json} (seed-{seed} {val_fraction:g} validation hold-out), "
                   f"test from {test_json}; binary labels = stenosis; labels_multiclass = COCO category ids")
    return write_prepared(out, train_items + test_items, fixed, val_fraction, 0.0, seed, description, _labels(coco))


__all__ = ["load_coco", "prepare_arcade", "prepare_arcade_s", "rasterize_annotations"]
