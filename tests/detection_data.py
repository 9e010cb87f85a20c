"""Tiny box datalists for the detection tests: grey frames with dark elliptical "stenoses" on a
textured background, each with its box (x = column first, as the datalists store boxes)."""

from __future__ import annotations

import json
import os

import numpy as np

from angiokit.data import write_png


def blob_frame(rng: np.random.Generator, size: int = 64, n_blobs: int = 2, radius=(4, 7)):
    """One frame with ``n_blobs`` dark ellipses -> (uint8 frame [size, size], boxes [[x1, y1, x2, y2]])."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frame = 170 + 20 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + rng.normal(0, 6, (size, size))
    boxes = []
    for _ in range(n_blobs):
        ry, rx = rng.uniform(*radius, size=2)
        cy, cx = rng.uniform(radius[1] + 1, size - radius[1] - 1, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        frame[inside] -= 110
        rows, cols = np.where(inside)
        boxes.append([float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)])
    return np.clip(frame, 0, 255).astype(np.uint8), boxes


def write_box_datalist(root, n_train: int = 6, n_val: int = 2, n_test: int = 3, size: int = 64, seed: int = 0) -> str:
    """``root/images/*.png`` and ``root/datalist.json`` in the detection datalist format."""
    rng = np.random.default_rng(seed)
    doc = {"labels": {"0": "stenosis"}, "training": [], "validation": [], "test": []}
    counts = {"training": n_train, "validation": n_val, "test": n_test}
    for split, n in counts.items():
        for i in range(n):
            frame, boxes = blob_frame(rng, size)
            name = f"images/{split}_{i}.png"
            write_png(os.path.join(root, name), frame)
            doc[split].append({"image": name, "box": boxes, "label": [0] * len(boxes)})
    path = os.path.join(root, "datalist.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path
