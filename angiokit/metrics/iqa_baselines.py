"""Classical image-quality scores used as baselines for CAS-IQA, oriented so that higher means
better: no-reference BRISQUE (``brisque`` package, its bundled model), PIQE (``pypiqe``),
scikit-image's blur effect; full-reference SSIM and PSNR against the real contrast frame C."""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)


def brisque_quality(image: np.ndarray) -> float:
    from brisque import BRISQUE

    global _BRISQUE
    if "_BRISQUE" not in globals():
        _BRISQUE = BRISQUE(url=False)
    grey = _uint8(image)
    return -float(_BRISQUE.score(np.stack([grey] * 3, -1)))  # BRISQUE: lower is better


def piqe_quality(image: np.ndarray) -> float:
    from pypiqe import piqe

    return -float(piqe(_uint8(image))[0])  # PIQE: lower is better


def sharpness_quality(image: np.ndarray) -> float:
    from skimage.measure import blur_effect

    return -float(blur_effect(np.asarray(image, dtype=np.float64)))  # blur effect: higher is blurrier


def ssim_quality(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(image, np.float64), np.asarray(reference, np.float64), data_range=255.0))


def psnr_quality(image: np.ndarray, reference: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(np.asarray(reference, np.float64), np.asarray(image, np.float64), data_range=255.0))


NO_REFERENCE: Dict[str, Callable[[np.ndarray], float]] = {"BRISQUE": brisque_quality, "PIQE": piqe_quality, "blur effect (skimage)": sharpness_quality}
FULL_REFERENCE: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"SSIM vs C": ssim_quality, "PSNR vs C": psnr_quality}


def baseline_scores(image: np.ndarray, reference: Optional[np.ndarray]) -> Dict[str, float]:
    """All baselines for one synthetic angiogram (8-bit grey) and its reference frame."""
    out = {name: fn(image) for name, fn in NO_REFERENCE.items()}
    if reference is not None:
        out.update({name: fn(image, reference) for name, fn in FULL_REFERENCE.items()})
    return out
