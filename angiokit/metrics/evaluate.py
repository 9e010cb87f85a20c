"""Score a segmenter on the entries of a datalist: per-image Dice and clDice."""

from __future__ import annotations

import csv
import json
import os
from typing import Callable, Dict, List

import numpy as np
import torch

from ..data.errors import AngioDataError
from ..data.readers import load_frame
from ..data.writers import atomic_path
from .vessel_metrics import cldice_score, dice_score


def datalist_entries(datalist: str, split: str) -> List[dict]:
    """Entries of one split with absolute paths."""
    if not os.path.isfile(datalist):
        raise AngioDataError(datalist, "datalist not found")
    with open(datalist) as f:
        doc = json.load(f)
    if split not in doc:
        raise AngioDataError(datalist, f"no {split!r} list; it has {[k for k in doc if isinstance(doc[k], list)]}")
    root = os.path.dirname(os.path.abspath(datalist))
    out = []
    for e in doc[split]:
        e = dict(e)
        for key in ("image", "label"):
            if key in e:
                e[key] = os.path.join(root, e[key])
        out.append(e)
    return out


def load_pairs(entries: List[dict]):
    """(image [1, H, W] tensor, binary mask [H, W]) per entry that has a label."""
    for e in entries:
        if "label" not in e:
            raise AngioDataError(e["image"], "entry has no label to score against")
        yield torch.from_numpy(load_frame(e["image"], frame=e.get("frame", "max_contrast"))), load_frame(e["label"])[0] > 0


def score_segmenter(segment: Callable[[torch.Tensor], torch.Tensor], entries: List[dict]) -> List[Dict]:
    """Per-image rows {image, dice, cldice} for ``segment``: [1, 1, H, W] -> [1, 1, H, W] mask."""
    rows = []
    for e, (image, mask) in zip(entries, load_pairs(entries)):
        pred = segment(image[None].float())[0, 0].detach().cpu().numpy() > 0.5
        rows.append({"image": os.path.basename(e["image"]), "dice": dice_score(pred, mask), "cldice": cldice_score(pred, mask)})
    return rows


def summarise(rows: List[Dict]) -> Dict[str, float]:
    d, c = np.array([r["dice"] for r in rows]), np.array([r["cldice"] for r in rows])
    return {"n": len(rows), "dice_mean": float(d.mean()), "dice_std": float(d.std()), "cldice_mean": float(c.mean()), "cldice_std": float(c.std())}


def write_rows_csv(path: str, rows: List[Dict]) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path
