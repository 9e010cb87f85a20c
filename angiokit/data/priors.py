"""Pre-compute vesselness priors and coarse vessel masks for every image of a datalist.

Not needed for training (the transforms compute them on the fly on the training device), but
handy to inspect them, or to feed pipelines that expect them on disk as the official VasoMIM
code does. Writes OUT/priors/<stem>.png (prior scaled to 0-255) and OUT/coarse_masks/<stem>.png
(0/255), and a copy of the datalist with "prior" and "coarse_mask" keys.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..transforms import coarse_vessel_mask, vesselness
from .datalist import SPLITS, write_datalist
from .errors import AngioDataError
from .readers import load_frame
from .writers import write_mask_png, write_png


def write_priors(datalist: str, out: str = None, sigmas: Sequence[float] = (1, 2, 3, 4), method: str = "sato", percentile: float = 92.0, progress: bool = True) -> str:
    """Returns the path of the new datalist (OUT/datalist_priors.json)."""
    if not os.path.isfile(datalist):
        raise AngioDataError(datalist, "datalist not found")
    with open(datalist) as f:
        doc = json.load(f)
    root = os.path.dirname(os.path.abspath(datalist))
    out = out or root
    entries = [(split, e) for split in SPLITS for e in doc.get(split, [])]
    for split, entry in tqdm(entries, desc="vesselness priors", disable=not progress):
        image_path = os.path.join(root, entry["image"])
        frame = torch.from_numpy(load_frame(image_path))
        prior = vesselness(frame, [float(s) for s in sigmas], method)
        prior = prior / prior.amax().clamp_min(1e-12)
        mask = coarse_vessel_mask(prior, percentile)
        stem = os.path.splitext(os.path.basename(entry["image"]))[0]
        prior_path = write_png(os.path.join(out, "priors", f"{stem}.png"), np.rint(prior[0].numpy() * 255).astype(np.uint8))
        mask_path = write_mask_png(os.path.join(out, "coarse_masks", f"{stem}.png"), mask[0].numpy())
        entry["image"] = os.path.relpath(image_path, out)
        for key in ("label", "label_multiclass", "guidewire", "catheter"):
            if key in entry:
                entry[key] = os.path.relpath(os.path.join(root, entry[key]), out)
        entry["prior"], entry["coarse_mask"] = os.path.relpath(prior_path, out), os.path.relpath(mask_path, out)
    doc["prior"] = f"{method} vesselness, sigmas {list(sigmas)}, scaled to 0-255 per image; coarse mask: top {100 - percentile:g} %, strongest 8-connected region"
    return write_datalist(os.path.join(out, "datalist_priors.json"), {k: doc.get(k, []) for k in SPLITS}, **{k: v for k, v in doc.items() if k not in SPLITS})
