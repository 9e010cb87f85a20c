"""PNG figures: mask overlays and image grids (matplotlib, headless)."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

Color = Tuple[int, int, int]
MASK_COLORS: Dict[str, Color] = {"vessel": (230, 40, 40), "guidewire": (40, 220, 255), "catheter": (255, 200, 0)}


def to_display(image: np.ndarray) -> np.ndarray:
    """Any 2-D image -> uint8 [H, W], stretched between its 0.5 and 99.5 percentiles."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    lo, hi = np.percentile(image, [0.5, 99.5])
    return (np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, masks: Dict[str, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """Grey image [H, W] with coloured masks blended in -> RGB uint8 [H, W, 3]."""
    rgb = np.repeat(to_display(image)[..., None], 3, axis=-1).astype(np.float32)
    for name, mask in masks.items():
        m = np.asarray(mask).astype(bool)
        if m.ndim == 3:
            m = m[0]
        color = np.asarray(MASK_COLORS.get(name, (0, 255, 0)), dtype=np.float32)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * color
    return rgb.astype(np.uint8)


def error_overlay(image: np.ndarray, pred: np.ndarray, target: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Segmentation errors on the image: true positives green, false positives red, misses blue."""
    p, g = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    p, g = (p[0] if p.ndim == 3 else p), (g[0] if g.ndim == 3 else g)
    rgb = np.repeat(to_display(image)[..., None], 3, axis=-1).astype(np.float32)
    for m, color in ((p & g, (40, 200, 60)), (p & ~g, (230, 40, 40)), (~p & g, (50, 110, 255))):
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, dtype=np.float32)
    return rgb.astype(np.uint8)


def save_grid(tiles: Sequence[np.ndarray], path: str, ncols: int, titles: Optional[Sequence[str]] = None, tile_inches: float = 2.6, dpi: int = 100, compact: bool = False) -> str:
    """Save tiles (grey or RGB) as one PNG grid; written to a temp file, then renamed.

    ``tile_inches`` is a tile's width; its height follows the tiles' shape, so the panels fill the
    figure (no white canvas around wide or tall tiles), with thin gaps and the titles above them.
    ``compact`` stores a 256-colour palette PNG (about 3x smaller; for figures committed to docs).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = int(np.ceil(len(tiles) / ncols))
    aspect = max(np.shape(t)[0] / np.shape(t)[1] for t in tiles)  # height / width of the tallest tile
    title_inches = 0.25 if titles is not None else 0.0
    size = (ncols * tile_inches, nrows * (tile_inches * aspect + title_inches))
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": (title_inches + 0.04) / (tile_inches * aspect)})
    for ax in axes.ravel():
        ax.axis("off")
    for i, tile in enumerate(tiles):
        ax = axes.ravel()[i]
        ax.imshow(tile, cmap="gray" if np.ndim(tile) == 2 else None, vmin=0, vmax=255, interpolation="lanczos")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, pad=3)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - (title_inches + 0.02) / size[1])
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".{os.path.basename(path)}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", pad_inches=0.04)
    plt.close(fig)
    if compact:
        from PIL import Image

        with Image.open(tmp) as im:
            im.convert("RGB").quantize(256).save(tmp, optimize=True)
    os.replace(tmp, path)
    return path
