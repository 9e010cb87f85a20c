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
from .common import SplitSpec, save_pair, write_prepared


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
    coco = load_coco(annotation_json)
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    if categories is None:
        wanted = set(names)
    else:
        unknown = sorted(set(map(str, categories)) - set(names.values()))
        if unknown:
            raise AngioDataError(annotation_json, f"unknown categories {unknown}; the file has {sorted(set(names.values()))}")
        wanted = {i for i, n in names.items() if n in set(map(str, categories))}
    by_image = defaultdict(list)
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    items = []
    for info in tqdm(coco["images"], desc="ARCADE images", disable=not progress):
        src = os.path.join(images_dir, info["file_name"])
        if not os.path.isfile(src):
            raise AngioDataError(src, f"image listed in {annotation_json} not found")
        stem = os.path.splitext(info["file_name"])[0]
        classes = rasterize_annotations(by_image[info["id"]], info["height"], info["width"])
        binary = np.isin(classes, list(wanted)) if classes.any() else np.zeros_like(classes, dtype=bool)
        item = save_pair(out, stem, src, binary)
        item["label_multiclass"] = write_png(os.path.join(out, "labels_multiclass", f"{stem}.png"), classes)
        items.append(item)
    labels = {"0": "background", **{str(i): f"segment {n}" if n != "stenosis" else "stenosis" for i, n in sorted(names.items())}}
    kept = ", ".join(sorted(names[i] for i in wanted))
    return write_prepared(out, items, split, val_fraction, test_fraction, seed, f"ARCADE from {annotation_json}; binary labels = {kept}; labels_multiclass = COCO category ids", labels)


__all__ = ["load_coco", "prepare_arcade", "rasterize_annotations"]
