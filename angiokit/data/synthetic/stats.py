"""Simple image statistics to compare synthetic and real angiograms side by side.

Per image (8-bit grey levels): intensity percentiles, noise level, vessel-to-background contrast
and vessel area fraction (the last two need a vessel mask).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import binary_dilation, convolve

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_sigma(image: np.ndarray) -> float:
    """Immerkaer's fast noise estimate (CVIU 1996): the mean |Laplacian-difference| response.

    Written out because skimage's ``estimate_sigma`` needs PyWavelets, which nothing else here
    uses. It measures pixel-level noise; systems that filter their images score low.
    """
    residual = convolve(np.asarray(image, dtype=np.float32), _IMMERKAER)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(residual).mean() / 6.0)


def image_statistics(image: np.ndarray, vessel_mask: Optional[np.ndarray] = None, ring_px: int = 5) -> Dict[str, float]:
    """Statistics of one grey image (0-255 scale); contrast = 1 - vessel mean / ring mean, where
    the ring is the background within ``ring_px`` of the vessels."""
    a = np.asarray(image, dtype=np.float32)
    p1, p50, p99 = np.percentile(a, [1, 50, 99])
    stats = {"p1": p1, "median": p50, "p99": p99, "mean": float(a.mean()), "noise": noise_sigma(a)}
    if vessel_mask is not None:
        m = np.asarray(vessel_mask) > 0
        if m.any():
            ring = binary_dilation(m, iterations=ring_px) & ~m
            stats["contrast"] = float(1.0 - a[m].mean() / max(a[ring].mean(), 1e-6))
            stats["area"] = float(m.mean())
    return {k: float(v) for k, v in stats.items()}


def summarise(samples: Sequence[Tuple[np.ndarray, Optional[np.ndarray]]]) -> Dict[str, Tuple[float, float]]:
    """Mean and std over images of each statistic."""
    rows = [image_statistics(img, mask) for img, mask in samples]
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    return {k: (float(np.mean([r[k] for r in rows if k in r])), float(np.std([r[k] for r in rows if k in r]))) for k in keys}


COLUMNS = [("median", "median grey"), ("p1", "1st pct"), ("p99", "99th pct"), ("noise", "noise sigma"), ("contrast", "vessel contrast"), ("area", "vessel area")]


def markdown_table(sets: Dict[str, Sequence[Tuple[np.ndarray, Optional[np.ndarray]]]]) -> str:
    """One row per named set: mean +- std of each statistic ("-" where masks are missing)."""
    lines = ["| set | images | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, samples in sets.items():
        summary = summarise(samples)
        cells = []
        for key, _ in COLUMNS:
            if key not in summary:
                cells.append("-")
            else:
                m, s = summary[key]
                cells.append(f"{m:.3f} ± {s:.3f}" if key in ("contrast", "area") else f"{m:.1f} ± {s:.1f}")
        lines.append(f"| {name} | {len(samples)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def histogram_figure(sets: Dict[str, List[np.ndarray]], path: str) -> str:
    """Overlaid normalised grey-level histograms of each set, saved as PNG (atomically)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.arange(0, 257, 4)
    for name, images in sets.items():
        values = np.concatenate([np.asarray(i, dtype=np.float32).ravel() for i in images])
        hist, _ = np.histogram(values, bins=bins, density=True)
        ax.plot(bins[:-1] + 2, hist, label=name)
    ax.set_xlabel("grey level (8-bit)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def compare_with_real(out_md: str, real_dirs, n_synthetic: int = 40, seed: int = 0, cfg=None) -> str:
    """Write a markdown table of statistics (synthetic set vs each real folder) and a histogram
    figure beside it (``<out_md stem>_histogram.png``). Each real entry is ``IMAGES_DIR`` or
    ``IMAGES_DIR:VESSEL_MASKS_DIR`` (masks paired by file name fill the vessel columns)."""
    import os

    from ..readers import load_frame
    from ..writers import atomic_path, to_uint
    from .config import SynthConfig
    from .engine import synthesize
    from .export import sample_seed
    from .preview import _set_name, real_frames_with_masks

    cfg = cfg or SynthConfig()
    synthetic = []
    for i in range(n_synthetic):
        s = synthesize(cfg, sample_seed(seed, i))
        synthetic.append((to_uint(s.image[0], 8).astype(np.float32), s.vessel[0]))
    sets = {f"synthetic (seed {seed}, {cfg.size} px)": synthetic}
    for spec in real_dirs:
        sets[f"real: {_set_name(spec)}"] = real_frames_with_masks(spec, load_frame)
    table = markdown_table(sets)
    hist_path = os.path.splitext(out_md)[0] + "_histogram.png"
    histogram_figure({name: [img for img, _ in samples] for name, samples in sets.items()}, hist_path)
    with atomic_path(out_md) as tmp:
        with open(tmp, "w") as f:
            f.write(table)
    return table
