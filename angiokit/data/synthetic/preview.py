"""Preview figure of synthetic angiograms (with mask overlays), optionally beside real frames."""

from __future__ import annotations

import glob
import os
from typing import List, Optional, Sequence

import numpy as np

from ...visualize import overlay, save_grid
from ..readers import load_frame
from ..writers import to_uint
from .config import SynthConfig, default_config
from .engine import synthesize
from .export import sample_seed


def real_frames(folder: str, limit: int) -> List[np.ndarray]:
    """Up to ``limit`` frames (8-bit scale) from a folder of images or DICOM cines, name order."""
    files = sorted(f for f in glob.glob(os.path.join(folder, "**", "*"), recursive=True) if os.path.isfile(f) and not f.lower().endswith((".md", ".csv", ".json", ".txt", ".xml")) and "SHA256" not in f)
    files = [f for f in files if "/masks/" not in f]
    picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(limit, len(files)))] if files else []
    return [load_frame(f)[0] for f in picked]


def real_frames_with_masks(spec: str, loader) -> List[tuple]:
    """``"IMAGES_DIR"`` or ``"IMAGES_DIR:MASKS_DIR"`` -> [(frame, vessel mask or None)], masks
    paired by file name. Give a masks folder only when it holds *vessel* masks."""
    folder, _, mask_dir = spec.partition(":")
    files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".dcm")))
    out = []
    for f in files:
        mask = loader(os.path.join(mask_dir, os.path.basename(f)))[0] > 0 if mask_dir else None
        out.append((loader(f)[0], mask))
    return out


def _set_name(folder: str) -> str:
    """'.../xcad_samples/images' -> 'xcad_samples'."""
    parts = os.path.normpath(folder.partition(":")[0]).split(os.sep)
    return parts[-2] if parts[-1] in ("images", "frames") and len(parts) > 1 else parts[-1]


def preview_figure(path: str, n: int = 8, size: int = 512, seed: int = 0, real_dirs: Optional[Sequence[str]] = None, cfg: Optional[SynthConfig] = None) -> str:
    """Rows of synthetic frames, the same frames with vessel (red), guidewire (cyan) and
    catheter (yellow) masks, a cine with a guidewire (wash-in), then (if given) real frames."""
    cfg = cfg or SynthConfig(size=size)
    ncols = min(n, 4)
    tiles, titles = [], []
    samples = [synthesize(cfg, sample_seed(seed, i)) for i in range(n)]
    for start in range(0, n, ncols):
        chunk = samples[start : start + ncols]
        for s in chunk:
            tiles.append(to_uint(s.image[0], 8))
            titles.append(f"synthetic ({s.meta['side']})")
        for s in chunk:
            tiles.append(overlay(s.image[0], {"vessel": s.vessel[0], "guidewire": s.guidewire[0], "catheter": s.catheter[0]}))
            titles.append("masks: vessel / wire / catheter")
    # one cine with a guidewire: contrast wash-in over four of its frames
    cine = synthesize(default_config(**{**cfg.to_dict(), "frames": 10, "guidewire_probability": 1.0}), sample_seed(seed, n))
    for t in np.linspace(0, cine.frames - 1, ncols).astype(int):
        tiles.append(overlay(cine.image[t], {"guidewire": cine.guidewire[t]}, alpha=0.9) if t == 0 else to_uint(cine.image[t], 8))
        titles.append(f"cine frame {t}" + (" (wire in cyan)" if t == 0 else ""))
    for folder in real_dirs or []:
        for frame in real_frames(folder.partition(":")[0], ncols):
            tiles.append(np.clip(frame, 0, 255).astype(np.uint8) if frame.max() <= 255 else (frame / frame.max() * 255).astype(np.uint8))
            titles.append(f"real: {_set_name(folder)}")
    return save_grid(tiles, path, ncols, titles, tile_inches=2.2, dpi=90, compact=True)
