"""Offline vessel priors for pre-training, made as the official VasoMIM code makes them (XA-SSL
``frangi_filter.py``): per frame, the binary map of ``angiokit.transforms.binary_vessel_prior``
(Sato vesselness of the 8-bit frame, 20-px border zeroed, 92nd percentile, the 4-connected
region grown from the maximum, exact), written as a 0/255 PNG.

    python -m apps.prepare priors SRC [OUT]

- SRC a folder of frames: OUT (default ``<SRC>_frangi``, beside SRC as XA-170K ships
  ``<source>_frangi/``) mirrors its tree, one ``<name>.png`` per frame, so the pre-training
  listing pairs each frame with its prior.
- SRC a datalist JSON: one ``<stem>.png`` per entry in OUT (default ``priors/`` beside the
  datalist) and ``datalist_priors.json`` beside the datalist: the same entries with a "prior".

``kind="continuous"`` writes the Sato vesselness scaled to 0-255 instead. Without stored priors
the training step computes the binary prior on its device (``AnatomyGuidance``).
"""

from __future__ import annotations

import glob as globlib
import json
import os
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..transforms import binary_vessel_prior, vesselness
from .datalist import SPLITS, write_datalist
from .errors import AngioDataError
from .parallel import map_cases
from .readers import load_frame
from .writers import write_png

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".dcm")
PRIOR_KINDS = ("binary", "continuous")


def eight_bit(frame: np.ndarray) -> np.ndarray:
    """A frame as the official filter sees it: integer grey levels 0-255 (frames stored with more
    bits are scaled by their maximum first)."""
    frame = np.asarray(frame, dtype=np.float32)
    top = float(frame.max()) if frame.size else 0.0
    if top > 255.0:
        frame = frame * (255.0 / top)
    return np.clip(np.rint(frame), 0, 255)


def frame_prior(frame: np.ndarray, kind: str = "binary", sigmas: Sequence[float] = (1, 2, 3, 4), border: int = 20, percentile: float = 92.0) -> np.ndarray:
    """[H, W] or [1, H, W] frame -> [H, W] uint8 prior (0/255 binary, or 0-255 continuous)."""
    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind must be one of {PRIOR_KINDS}, got {kind!r}")
    grey = torch.from_numpy(eight_bit(frame).reshape(1, 1, *np.shape(frame)[-2:]))
    sigmas = [float(s) for s in sigmas]
    if kind == "binary":
        prior = binary_vessel_prior(grey, sigmas, int(border), float(percentile), grey_levels=1.0, rounds=None)  # exact: syncs are free here
    else:
        v = vesselness(grey, sigmas)
        prior = v / v.amax().clamp_min(1e-12)
    return np.rint(prior[0, 0].numpy() * 255).astype(np.uint8)


def _write_one(job: Tuple) -> str:
    image_path, frame, out_path, kind, sigmas, border, percentile, overwrite = job
    if overwrite or not os.path.isfile(out_path):
        pixels = load_frame(image_path, frame if frame is not None else "max_contrast")
        write_png(out_path, frame_prior(pixels, kind, sigmas, border, percentile))
    return out_path


def _folder_jobs(src: str, out: str) -> List[Tuple[str, None, str]]:
    files = sorted(f for f in globlib.glob(os.path.join(src, "**", "*"), recursive=True) if f.lower().endswith(FRAME_EXTENSIONS) and os.path.isfile(f))
    if not files:
        raise AngioDataError(src, f"no frames ({', '.join(FRAME_EXTENSIONS)}) in this folder")
    return [(f, None, os.path.join(out, os.path.splitext(os.path.relpath(f, src))[0] + ".png")) for f in files]


def write_priors(
    src: str,
    out: str = None,
    kind: str = "binary",
    sigmas: Sequence[float] = (1, 2, 3, 4),
    border: int = 20,
    percentile: float = 92.0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Write a prior per frame of ``src`` (a folder of frames or a datalist JSON); frames whose
    prior exists are skipped unless ``overwrite``. Returns OUT (folder) or the new datalist."""
    if kind not in PRIOR_KINDS:
        raise ValueError(f"kind must be one of {PRIOR_KINDS}, got {kind!r}")
    src = os.path.abspath(src)
    settings = (kind, tuple(float(s) for s in sigmas), int(border), float(percentile), bool(overwrite))
    if os.path.isdir(src):
        out = os.path.abspath(out or src.rstrip(os.sep) + "_frangi")
        jobs = [(*job, *settings) for job in _folder_jobs(src, out)]
        map_cases(_write_one, jobs, workers, desc=f"{kind} vessel priors", unit="frame", progress=progress)
        return out
    if not os.path.isfile(src):
        raise AngioDataError(src, "expected a folder of frames or a datalist JSON")
    with open(src) as f:
        doc = json.load(f)
    root = os.path.dirname(src)
    out = os.path.abspath(out or os.path.join(root, "priors"))
    entries = [e for split in SPLITS for e in doc.get(split, [])]
    jobs = []
    for e in entries:
        stem = os.path.splitext(os.path.basename(e["image"]))[0] + (f"_frame{e['frame']}" if "frame" in e else "")
        jobs.append((os.path.join(root, e["image"]), e.get("frame"), os.path.join(out, f"{stem}.png"), *settings))
    written = map_cases(_write_one, jobs, workers, desc=f"{kind} vessel priors", unit="frame", progress=progress)
    for entry, path in zip(entries, written):
        entry["prior"] = os.path.relpath(path, root)
    doc["prior"] = f"{kind} vessel prior (official VasoMIM: Sato sigmas {list(settings[1])} of the 8-bit frame, {border}-px border, {percentile:g}th percentile, 4-connected region from the maximum)" if kind == "binary" else f"Sato vesselness, sigmas {list(settings[1])}, scaled to 0-255 per frame"
    return write_datalist(os.path.join(root, "datalist_priors.json"), {k: doc.get(k, []) for k in SPLITS}, **{k: v for k, v in doc.items() if k not in SPLITS})
