"""Score a segmenter on the entries of a datalist: per-image Dice and clDice."""

from __future__ import annotations

import os
from typing import Callable, Dict, List

import numpy as np
import torch

from ..data.datalist import read_entries
from ..data.errors import AngioDataError
from ..data.readers import load_frame
from ..data.writers import write_csv
from .vessel_metrics import cldice_score, dice_score


def datalist_entries(datalist: str, split: str) -> List[dict]:
    """Entries of one split with absolute paths."""
    return read_entries(datalist, [split])


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
    return write_csv(path, rows)
