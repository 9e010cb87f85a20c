"""XA DICOM files or folders -> PNG frames + an unlabeled datalist (for pre-training sets)."""

from __future__ import annotations

import glob
import os
from typing import List, Union

import numpy as np
from tqdm import tqdm

from ..errors import AngioDataError
from ..readers import frame_index, is_dicom_file, read_angiogram
from ..writers import write_png
from .common import SplitSpec, write_prepared


def find_dicoms(src: str) -> List[str]:
    if os.path.isfile(src):
        return [src]
    if not os.path.isdir(src):
        raise AngioDataError(src, "DICOM file or folder not found")
    files = sorted(f for f in glob.glob(os.path.join(src, "**", "*"), recursive=True) if os.path.isfile(f) and (f.lower().endswith((".dcm", ".dicom")) or is_dicom_file(f)))
    if not files:
        raise AngioDataError(src, "no DICOM files in folder")
    return files


def prepare_dicom_frames(src: str, out: str, frames: Union[str, int] = "all", split: SplitSpec = None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> str:
    """Write every selected frame of every XA DICOM under ``src`` as images/<file>_fNN.png.

    frames: "all", "max_contrast" or a frame index. Frames of one cine share a case (so they
    share a split).
    """
    items = []
    for path in tqdm(find_dicoms(src), desc="XA DICOM files", disable=not progress):
        cine = read_angiogram(path)
        case = os.path.splitext(os.path.basename(path))[0]
        indices = range(cine.frames.shape[0]) if frames == "all" else [frame_index(cine.frames, frames, path)]
        pixels = np.clip(np.rint(cine.frames), 0, 65535)
        dtype = np.uint8 if pixels.max() <= 255 else np.uint16
        for t in indices:
            dst = os.path.join(out, "images", f"{case}_f{t:03d}.png")
            write_png(dst, pixels[t].astype(dtype))
            items.append({"case": case, "image": dst, "source": os.path.abspath(path), "source_frame": int(t), "frame_time_ms": cine.meta["frame_time_ms"]})
    return write_prepared(out, items, split, val_fraction, test_fraction, seed, f"frames of XA DICOM under {src} ({frames})")
