"""How far the synthetic angiograms are from real ones, one statistic at a time.

Each function takes plain numpy arrays (a grey frame on the 8-bit scale, a boolean vessel mask)
and returns numbers, so the same code measures a synthetic frame and a real one:

* vessel width: ``vessel_widths`` (2 x the distance transform at skeleton pixels, in pixels at
  the frame's own resolution; a bar ``w`` px wide measures ``w`` for even ``w`` and ``w + 1`` for
  odd ``w``), ``width_percentiles``, ``width_histogram``;
* contrast by width class: ``contrast_by_width`` (1 - mean vessel grey / mean grey of the
  background ring around those vessel pixels), ``contrast_vs_width``;
* background texture: ``background_spectrum`` (radially averaged power spectrum of a central
  crop, vessels filled in), ``radial_power_spectrum``, ``spectral_slope``;
* noise: ``noise_sigma_in`` (Immerkaer's estimate of ``stats.noise_sigma``, inside the field);
* field of view: ``detect_field_of_view`` (dark regions touching the frame border; a circular
  field or another border).

``apps/synth_gap.py`` runs them over the synthetic engine and the real sets and writes
docs/synthetic_vs_real.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, convolve, distance_transform_edt, gaussian_filter, label

from .stats import _IMMERKAER

WIDTH_CLASSES: Tuple[Tuple[str, float, float], ...] = (("thin", 0.0, 3.0), ("medium", 3.0, 8.0), ("wide", 8.0, np.inf))
"""(name, low, high): a vessel pixel is in the class when low <= its width (px) < high."""
WIDTH_PERCENTILES = (5, 25, 50, 75, 95)
WIDTH_BINS = np.array([1.5, 2.5, 3.0, 5.0, 6.5, 8.0, 10.0, 12.0, 14.0, 17.0, 20.0, 24.0, 30.0])
"""Histogram / contrast-curve bin edges in pixels. Widths are >= 2 and, being 2 x a pixel
distance, take only the values 2, 2.83, 4, 4.47, 5.66, 6, ... at the thin end, so the bins
there follow those values (1-px bins would alternate between full and empty)."""
SPECTRUM_BINS = np.geomspace(0.005, 0.5, 31)
"""Radial frequency bin edges (cycles / pixel) shared by every set, so spectra average and compare."""
SLOPE_BAND = (0.02, 0.15)
"""Frequencies (cycles / pixel) over which ``spectral_slope`` fits P(f) ~ f^-beta."""
HIGH_BAND = (0.3, 0.5)
"""Frequencies (cycles / pixel) whose mean power is the spectrum's high-frequency floor."""


# ---- vessel width ---------------------------------------------------------------------------


def _skeleton(mask: np.ndarray) -> np.ndarray:
    from skimage.morphology import skeletonize

    return skeletonize(np.asarray(mask, dtype=bool))


def vessel_widths(mask: np.ndarray) -> np.ndarray:
    """Width (px) at every skeleton pixel of a binary vessel mask: 2 x its Euclidean distance to
    the nearest background pixel. One value per skeleton pixel, so the distribution is weighted
    by vessel length, not by area."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros(0, dtype=np.float32)
    dist = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # a vessel touching the frame edge is cut there
    return (2.0 * dist[_skeleton(m)]).astype(np.float32)


def skeleton_width_map(mask: np.ndarray) -> np.ndarray:
    """Width (px) at the skeleton pixels of a vessel mask, 0 elsewhere (``vessel_widths`` as a map)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros(m.shape, dtype=np.float32)
    dist = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    return np.where(_skeleton(m), 2.0 * dist, 0.0).astype(np.float32)


def vessel_width_map(mask: np.ndarray, skeleton_widths: Optional[np.ndarray] = None) -> np.ndarray:
    """Each vessel pixel gets the width of its nearest skeleton pixel (0 outside the vessels), so
    pixels at a vessel's edge belong to the same width class as its centreline."""
    m = np.asarray(mask, dtype=bool)
    out = np.zeros(m.shape, dtype=np.float32)
    if not m.any():
        return out
    width_at_skel = skeleton_width_map(m) if skeleton_widths is None else skeleton_widths
    _, (iy, ix) = distance_transform_edt(width_at_skel <= 0, return_indices=True)
    out[m] = width_at_skel[iy[m], ix[m]]
    return out


def width_percentiles(widths: np.ndarray, q: Sequence[float] = WIDTH_PERCENTILES) -> Dict[str, float]:
    """{"p5": ..., "p50": ...} of a width sample (NaN when empty)."""
    w = np.asarray(widths, dtype=np.float64)
    values = np.percentile(w, q) if w.size else [np.nan] * len(q)
    return {f"p{int(p) if float(p).is_integer() else p}": float(v) for p, v in zip(q, values)}


def width_histogram(widths: np.ndarray, bins: np.ndarray = WIDTH_BINS) -> np.ndarray:
    """Fraction of skeleton pixels per width bin (the last bin also holds wider ones)."""
    w = np.clip(np.asarray(widths, dtype=np.float64), bins[0], bins[-1] - 1e-6)
    hist, _ = np.histogram(w, bins=bins)
    return hist / max(hist.sum(), 1)


def width_class_fractions(widths: np.ndarray, classes=WIDTH_CLASSES) -> Dict[str, float]:
    """Share of the vessel length (skeleton pixels) in each width class."""
    w = np.asarray(widths)
    return {name: float(((w >= lo) & (w < hi)).mean()) if w.size else np.nan for name, lo, hi in classes}


# ---- contrast -------------------------------------------------------------------------------


def ring_contrast(image: np.ndarray, vessel_pixels: np.ndarray, all_vessels: np.ndarray, ring_px: int = 5, valid: Optional[np.ndarray] = None) -> float:
    """1 - mean grey of ``vessel_pixels`` / mean grey of the background ring within ``ring_px``
    of them (ring = not any vessel, inside ``valid`` when given). NaN without pixels on either side."""
    a = np.asarray(image, dtype=np.float32)
    v = np.asarray(vessel_pixels, dtype=bool)
    if not v.any():
        return float("nan")
    ring = binary_dilation(v, iterations=ring_px) & ~np.asarray(all_vessels, dtype=bool)
    if valid is not None:
        ring &= np.asarray(valid, dtype=bool)
    if not ring.any():
        return float("nan")
    return float(1.0 - a[v].mean() / max(float(a[ring].mean()), 1e-6))


def contrast_by_width(image: np.ndarray, mask: np.ndarray, classes=WIDTH_CLASSES, ring_px: int = 5, valid: Optional[np.ndarray] = None, width_map: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Ring contrast of the vessel pixels of each width class (``WIDTH_CLASSES``: thin < 3 px,
    medium, wide >= 8 px); NaN for a class the frame does not have. ``width_map``: a
    ``vessel_width_map`` of the mask (computed when not given); pass a ``skeleton_width_map``
    instead to measure the centreline pixels only (less sensitive to masks drawn wider than
    the lumen: the ring still starts at the mask's edge)."""
    m = np.asarray(mask, dtype=bool)
    wmap = vessel_width_map(m) if width_map is None else width_map
    return {name: ring_contrast(image, m & (wmap >= lo) & (wmap < hi) & (wmap > 0), m, ring_px, valid) for name, lo, hi in classes}


def contrast_vs_width(image: np.ndarray, mask: np.ndarray, bins: np.ndarray = WIDTH_BINS, ring_px: int = 5, valid: Optional[np.ndarray] = None, width_map: Optional[np.ndarray] = None) -> np.ndarray:
    """Ring contrast per width bin (len(bins) - 1 values, NaN for empty bins)."""
    m = np.asarray(mask, dtype=bool)
    wmap = vessel_width_map(m) if width_map is None else width_map
    out = np.full(len(bins) - 1, np.nan)
    for i, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        sel = m & (wmap >= lo) & (wmap < hi) & (wmap > 0)
        if sel.sum() >= 20:  # a handful of pixels gives a meaningless mean
            out[i] = ring_contrast(image, sel, m, ring_px, valid)
    return out


# ---- background texture -----------------------------------------------------------------------


def fill_masked(image: np.ndarray, hole: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Fill ``hole`` pixels from the surrounding pixels by normalised Gaussian convolution,
    widening the kernel until every hole pixel is reached (a smooth fill: no noise inside)."""
    a = np.asarray(image, dtype=np.float64)
    known = ~np.asarray(hole, dtype=bool)
    out = a.copy()
    if known.all():
        return out
    if not known.any():
        out[:] = 0.0
        return out
    todo = ~known
    s = sigma
    while todo.any():
        num = gaussian_filter(np.where(known, a, 0.0), s, mode="reflect")
        den = gaussian_filter(known.astype(np.float64), s, mode="reflect")
        ok = todo & (den > 1e-3)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
        s *= 2.0
    return out


def radial_power_spectrum(image: np.ndarray, bins: np.ndarray = SPECTRUM_BINS) -> Tuple[np.ndarray, np.ndarray]:
    """(bin centre frequencies in cycles / pixel, radially averaged power spectral density).

    The image is mean-subtracted and Hann-windowed; the PSD is normalised so that white noise of
    standard deviation s has a flat PSD of s**2 (grey level**2 per (cycle / pixel)**2). Bins with
    no Fourier sample are NaN (low frequencies of a small image)."""
    a = np.asarray(image, dtype=np.float64)
    h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    x = (a - a.mean()) * window
    power = np.abs(np.fft.fft2(x)) ** 2 / (h * w * float(np.mean(window**2)))
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    f = np.hypot(fy, fx).ravel()
    idx = np.digitize(f, bins) - 1
    ok = (idx >= 0) & (idx < len(bins) - 1)
    total = np.bincount(idx[ok], weights=power.ravel()[ok], minlength=len(bins) - 1)
    count = np.bincount(idx[ok], minlength=len(bins) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        psd = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.sqrt(bins[:-1] * bins[1:]), psd


def central_crop_box(shape: Tuple[int, int], fraction: float = 0.5) -> Tuple[slice, slice]:
    h, w = shape
    ch, cw = int(round(h * fraction)), int(round(w * fraction))
    return slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw)


def background_spectrum(image: np.ndarray, vessel_mask: Optional[np.ndarray] = None, valid: Optional[np.ndarray] = None, crop: float = 0.5, bins: np.ndarray = SPECTRUM_BINS, grow_px: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Power spectrum of the central ``crop`` of the frame with the vessels (grown by ``grow_px``
    so their dark edges go too) and anything outside the exposed field filled in from the
    surrounding background (``fill_masked``). Without a mask it is the spectrum of the whole crop."""
    a = np.asarray(image, dtype=np.float64)
    hole = np.zeros(a.shape, dtype=bool)
    if vessel_mask is not None:
        hole |= binary_dilation(np.asarray(vessel_mask, dtype=bool), iterations=grow_px) if grow_px else np.asarray(vessel_mask, dtype=bool)
    if valid is not None:
        hole |= ~np.asarray(valid, dtype=bool)
    box = central_crop_box(a.shape, crop)
    return radial_power_spectrum(fill_masked(a[box], hole[box]), bins)


def spectral_slope(freqs: np.ndarray, psd: np.ndarray, band: Tuple[float, float] = SLOPE_BAND) -> float:
    """beta of a least-squares fit log P = c - beta log f over ``band`` (1/f**2 texture: beta = 2,
    white noise: beta = 0)."""
    f, p = np.asarray(freqs), np.asarray(psd)
    sel = (f >= band[0]) & (f <= band[1]) & np.isfinite(p) & (p > 0)
    if sel.sum() < 2:
        return float("nan")
    return float(-np.polyfit(np.log(f[sel]), np.log(p[sel]), 1)[0])


def band_power(freqs: np.ndarray, psd: np.ndarray, band: Tuple[float, float] = HIGH_BAND) -> float:
    """Mean PSD over a frequency band."""
    f, p = np.asarray(freqs), np.asarray(psd)
    sel = (f >= band[0]) & (f <= band[1]) & np.isfinite(p)
    return float(p[sel].mean()) if sel.any() else float("nan")


# ---- noise -------------------------------------------------------------------------------------


def noise_sigma_in(image: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
    """Immerkaer's noise estimate (``stats.noise_sigma``) over the pixels whose 3 x 3
    neighbourhood lies inside ``valid`` (the exposed field: a black border has no noise and
    its edge is no noise either). Without ``valid`` it equals ``stats.noise_sigma``."""
    a = np.asarray(image, dtype=np.float32)
    residual = np.abs(convolve(a, _IMMERKAER))
    inner = np.zeros(a.shape, dtype=bool)
    inner[1:-1, 1:-1] = True
    if valid is not None:
        inner &= binary_erosion(np.asarray(valid, dtype=bool), iterations=1, border_value=1)
    if not inner.any():
        return float("nan")
    return float(np.sqrt(np.pi / 2.0) * residual[inner].mean() / 6.0)


# ---- field of view -----------------------------------------------------------------------------


@dataclass
class FieldOfView:
    inside: np.ndarray
    """[H, W] bool: the exposed field."""
    outside_fraction: float
    """Share of the frame outside the exposed field."""
    shape: str
    """"full" (nothing outside), "circular" (a disc, possibly clipped by the frame edges) or
    "other" (rectangular borders, collimator shutters - or dark anatomy that reaches the frame
    border and is as dark as an unexposed margin: a threshold cannot tell them apart)."""
    circle: Optional[Tuple[float, float, float]] = None
    """(centre row, centre column, radius) in pixels for a circular field."""

    @property
    def circular(self) -> bool:
        return self.shape == "circular"


def fit_circle(rows: np.ndarray, cols: np.ndarray) -> Tuple[float, float, float]:
    """Least-squares (Kasa) circle through points: (centre row, centre column, radius)."""
    y, x = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    A = np.stack([x, y, np.ones_like(x)], axis=1)
    b = x**2 + y**2
    (c0, c1, c2), *_ = np.linalg.lstsq(A, b, rcond=None)
    cx, cy = c0 / 2.0, c1 / 2.0
    return float(cy), float(cx), float(np.sqrt(max(c2 + cx**2 + cy**2, 0.0)))


def _disc(shape, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def detect_field_of_view(image: np.ndarray, sigma_fraction: float = 1 / 100, dark_fraction: float = 0.2, min_fraction: float = 0.005, circle_iou: float = 0.85) -> FieldOfView:
    """Find the unexposed (near-black) margins of a frame.

    The frame is smoothed with a Gaussian of ``sigma_fraction`` x its width; pixels darker than
    ``dark_fraction`` x the smoothed frame's 99th percentile form candidate regions, and those
    connected to the frame border (``min_fraction`` of the frame at least, in total) are
    outside; their edge is then moved to the grey half-way between outside and field (within
    two sigma), where the unsmoothed edge lies. The field is circular when a circle fitted to its inner edge (the pixels not on the
    frame border) fits that edge closely (radial spread < 2 % of the radius), is no larger than
    1.25 x the frame (a nearly straight edge fits a huge circle) and the area outside it matches
    the outside region with IoU >= ``circle_iou`` (the outside region, being small, is the
    sensitive side); "other" otherwise."""
    a = np.asarray(image, dtype=np.float32)
    h, w = a.shape
    sigma = sigma_fraction * max(h, w)
    smooth = gaussian_filter(a, sigma, mode="nearest")
    dark = smooth < dark_fraction * float(np.percentile(smooth, 99))
    labels, n = label(dark)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, edge_labels[edge_labels > 0]) if n else np.zeros_like(dark)
    if outside.mean() < min_fraction:
        return FieldOfView(np.ones((h, w), dtype=bool), 0.0, "full")
    # the dark threshold crosses the smoothed edge on its dark side (about one sigma out); move
    # the edge to the half-way grey between the outside and the field, within two sigma of it
    half = 0.5 * (float(np.median(smooth[outside])) + float(np.median(smooth[~outside])))
    outside |= binary_dilation(outside, iterations=max(1, int(np.ceil(2 * sigma)))) & (smooth < half)
    inside = ~outside
    # keep the largest inside component (specks enclosed by the border are not the field)
    lab_in, n_in = label(inside)
    if n_in > 1:
        inside = lab_in == (np.argmax(np.bincount(lab_in.ravel())[1:]) + 1)
    fraction = float(1.0 - inside.mean())
    edge = inside & ~binary_erosion(inside)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False  # the frame's own edge is no field edge
    shape, circle = "other", None
    if edge.sum() >= 10:
        rows, cols = np.nonzero(edge)
        cy, cx, r = fit_circle(rows, cols)
        disc = _disc((h, w), cy, cx, r)
        outside = ~inside
        iou = (outside & ~disc).sum() / max((outside | ~disc).sum(), 1)
        spread = np.std(np.hypot(rows - cy, cols - cx)) / max(r, 1e-6)
        if iou >= circle_iou and spread < 0.02 and r <= 1.25 * max(h, w):
            shape, circle = "circular", (cy, cx, r)
    return FieldOfView(inside, fraction, shape, circle)


__all__ = [
    "WIDTH_CLASSES", "WIDTH_PERCENTILES", "WIDTH_BINS", "SPECTRUM_BINS", "SLOPE_BAND", "HIGH_BAND",
    "vessel_widths", "skeleton_width_map", "vessel_width_map", "width_percentiles", "width_histogram", "width_class_fractions",
    "ring_contrast", "contrast_by_width", "contrast_vs_width",
    "fill_masked", "radial_power_spectrum", "central_crop_box", "background_spectrum", "spectral_slope", "band_power",
    "noise_sigma_in", "FieldOfView", "fit_circle", "detect_field_of_view",
]
