"""Write a synthetic angiogram set to disk: images, masks and a MONAI datalist.

Layout of ``out``:
    images/<case>.png | .dcm | .nii.gz      (PNG cines: one file per frame, <case>_fNN.png)
    labels/<case>...                        vessel masks: PNG {0, 255}; NIfTI {0, 1}
    guidewire/<case>..., catheter/<case>... device masks, same conventions
    datalist.json                           {"training", "validation", "test"}, split by case
    synth_config.json                       the SynthConfig, seed and format used
DICOM images get NIfTI masks ([T] frames in the (H, W, 1, T) layout of ``writers``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import List, Optional

import numpy as np

from ..datalist import build_datalist, write_datalist
from ..parallel import map_cases
from ..writers import atomic_path, to_uint, write_dicom_xa, write_mask_png, write_nifti, write_png
from .config import SynthConfig
from .engine import synthesize

FORMATS = ("png", "dicom", "nifti")
MASKS = {"label": ("labels", "vessel"), "guidewire": ("guidewire", "guidewire"), "catheter": ("catheter", "catheter")}


def sample_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed of sample ``index`` in a set made with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _write_sample(args) -> List[dict]:
    out, index, cfg, seed, fmt, bits = args
    case = f"synth_{index:05d}"
    sample = synthesize(cfg, sample_seed(seed, index))
    pixels = to_uint(sample.image, bits)
    p = lambda folder, name: os.path.join(out, folder, name)  # noqa: E731
    masks = {key: getattr(sample, attr) for key, (_, attr) in MASKS.items()}
    common = {"case": case, "frames": sample.frames, "side": sample.meta["side"], "has_guidewire": sample.meta["has_guidewire"]}
    if fmt == "png":
        items = []
        for t in range(sample.frames):
            name = f"{case}.png" if sample.frames == 1 else f"{case}_f{t:02d}.png"
            item = dict(common, image=write_png(p("images", name), pixels[t]), source_frame=t)
            for key, (folder, _) in MASKS.items():
                item[key] = write_mask_png(p(folder, name), masks[key][t])
            items.append(item)
        return items
    name = f"{case}.nii.gz"
    if fmt == "dicom":
        image = write_dicom_xa(p("images", f"{case}.dcm"), pixels, sample.pixel_spacing_mm, sample.frame_time_ms, patient_id=case, series_description=f"angiokit synthetic {case}")
    else:
        image = write_nifti(p("images", name), pixels, sample.pixel_spacing_mm, sample.frame_time_ms)
    item = dict(common, image=image)
    for key, (folder, _) in MASKS.items():
        item[key] = write_nifti(p(folder, name), masks[key], sample.pixel_spacing_mm, sample.frame_time_ms)
    return [item]


def write_synthetic_dataset(
    out: str,
    n: int = 200,
    cfg: Optional[SynthConfig] = None,
    seed: int = 0,
    fmt: str = "png",
    bits: int = 8,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    workers: int = 1,
    progress: bool = True,
) -> str:
    """Generate ``n`` samples into ``out``; returns the datalist path."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cfg = cfg or SynthConfig()
    # DICOM XA detectors store 12 bits; 16-bit PNG / NIfTI use the full 16-bit range
    stored_bits = 12 if (fmt == "dicom" and bits == 16) else bits
    jobs = [(out, i, cfg, seed, fmt, stored_bits) for i in range(n)]
    results = map_cases(_write_sample, jobs, workers, desc=f"synthesising {n} {fmt} samples", unit="sample", progress=progress)
    items: List[dict] = [item for result in results for item in result]
    datalist = build_datalist(items, out, val_fraction, test_fraction, seed, path_keys=("image",) + tuple(MASKS))
    with atomic_path(os.path.join(out, "synth_config.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump({"seed": seed, "n": n, "format": fmt, "bits": stored_bits, "config": asdict(cfg)}, f, indent=2)
    label_note = "vessel masks {0,255} PNG" if fmt == "png" else "vessel masks {0,1} NIfTI"
    return write_datalist(
        os.path.join(out, "datalist.json"),
        datalist,
        description=f"angiokit synthetic X-ray angiograms ({n} samples, seed {seed}, {fmt}; {label_note})",
        labels={"0": "background", "1": "vessel"},
    )
