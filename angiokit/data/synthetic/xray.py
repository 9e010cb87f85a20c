"""Thorax background and the X-ray imaging chain (Beer-Lambert, blur, quantum noise, display).

The background is a map of effective line integrals (see ``config``): heart shadow, soft-tissue
texture, spine, ribs, diaphragm and collimator shutters. It is smooth, so it is built at a
quarter of the resolution and upsampled. The imaging chain turns total line integrals into a displayed
frame: I = I0 * vignetting * exp(-L), focal-spot blur, Poisson quanta plus electronic noise,
scintillator spread, log conversion, unsharp-mask edge enhancement and a display window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from .config import SynthConfig


def smooth_field(rng: np.random.Generator, shape, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish random field varying over about ``shape / cells`` pixels."""
    grid = torch.from_numpy(rng.standard_normal((1, 1, cells + 3, cells + 3)).astype(np.float32))
    h, w = shape
    up = F.interpolate(grid, size=(h * (cells + 3) // cells, w * (cells + 3) // cells), mode="bicubic", align_corners=False)
    oy, ox = (up.shape[2] - h) // 2, (up.shape[3] - w) // 2
    return up[0, 0, oy : oy + h, ox : ox + w].numpy()


def _soft_step(x: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(x / max(width, 1e-6)))


def _spine(rng, cfg: SynthConfig, yy, xx, mm_per_px) -> np.ndarray:
    n = xx.shape[0]
    angle = np.deg2rad(rng.uniform(-12, 12))
    x0 = rng.uniform(0.05, 0.95) * n
    across = (xx - x0) * np.cos(angle) + (yy - n / 2) * np.sin(angle)
    along = -(xx - x0) * np.sin(angle) + (yy - n / 2) * np.cos(angle)
    half_width = rng.uniform(18, 25) / mm_per_px
    edge = 2.0 / mm_per_px
    body = _soft_step(half_width - np.abs(across), edge)
    period = rng.uniform(26, 32) / mm_per_px
    gap = rng.uniform(4, 7) / mm_per_px
    phase = np.mod(along + rng.uniform(0, period), period)
    disc = _soft_step(gap - phase, 0.8 / mm_per_px)
    cortex = np.exp(-((np.abs(across) - half_width) ** 2) / (2 * (1.5 / mm_per_px) ** 2))
    return rng.uniform(*cfg.spine_attenuation) * (body * (1 - 0.3 * disc) + 0.3 * cortex)


def _ribs(rng, cfg: SynthConfig, yy, xx, mm_per_px) -> np.ndarray:
    n = xx.shape[0]
    out = np.zeros_like(xx)
    count = int(rng.integers(cfg.rib_count[0], cfg.rib_count[1] + 1))
    spacing = rng.uniform(25, 35) / mm_per_px
    start = rng.uniform(-0.2, 0.3) * n
    slope = rng.uniform(-0.6, 0.6)
    curvature = rng.uniform(0.5, 1.5) / n
    xc = rng.uniform(-0.5, 1.5) * n
    width = rng.uniform(9, 14) / mm_per_px
    for k in range(count):
        centre_line = start + k * spacing + slope * (xx - n / 2) + curvature * (xx - xc) ** 2
        dist = (yy - centre_line) / np.sqrt(1 + (slope + 2 * curvature * (xx - xc)) ** 2)
        band = _soft_step(width / 2 - np.abs(dist), 1.0 / mm_per_px)
        cortex = np.exp(-((np.abs(dist) - width / 2) ** 2) / (2 * (1.0 / mm_per_px) ** 2))
        out += rng.uniform(*cfg.rib_attenuation) * (0.6 * band + 0.6 * cortex)
    return out


def _diaphragm(rng, cfg: SynthConfig, yy, xx, mm_per_px) -> np.ndarray:
    n = xx.shape[0]
    y0 = rng.uniform(0.55, 1.0) * n
    xc = rng.uniform(0.0, 1.0) * n
    curve = y0 + rng.uniform(0.4, 1.5) / n * (xx - xc) ** 2 + rng.uniform(-0.4, 0.4) * (xx - n / 2)
    below = _soft_step(yy - curve, rng.uniform(2, 5) / mm_per_px)
    depth = np.clip((yy - curve) / n, 0, None)
    return rng.uniform(*cfg.diaphragm_attenuation) * below * (1 + 0.8 * depth)


def _heart_shadow(cfg: SynthConfig, yy, xx, ellipse_centre, ellipse_cov, amplitude) -> np.ndarray:
    d = np.stack([xx - ellipse_centre[0], yy - ellipse_centre[1]], axis=-1)
    inv = np.linalg.inv(ellipse_cov)
    rho2 = np.einsum("...i,ij,...j->...", d, inv, d)
    # parabolic rather than the exact ellipsoid chord: the heart border is soft on real frames
    return amplitude * np.clip(1.0 - rho2, 0.0, None)


def _collimator(rng, cfg: SynthConfig, yy, xx, mm_per_px) -> np.ndarray:
    n = xx.shape[0]
    out = np.zeros_like(xx)
    edges = [(xx, 1), (xx, -1), (yy, 1), (yy, -1)]
    for k in rng.permutation(4)[: rng.integers(1, 3)]:
        coord, sign = edges[k]
        pos = rng.uniform(0.0, 0.08) * n
        dist = (coord - pos) if sign > 0 else (n - 1 - pos - coord)
        out += rng.uniform(*cfg.collimator_attenuation) * _soft_step(-dist, 1.5 / mm_per_px)
    return out


def circular_field(rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """[size, size] bool: an image intensifier's round field (a disc near the centre)."""
    n = cfg.size
    radius = rng.uniform(*cfg.circular_field_radius) * n
    cy, cx = (n - 1) / 2 + rng.uniform(-0.03, 0.03, size=2) * n
    yy, xx = np.mgrid[0:n, 0:n]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def background_line_integral(rng: np.random.Generator, cfg: SynthConfig, ellipse_centre_px, ellipse_cov_px) -> np.ndarray:
    """Static thorax background, [size, size] float32 effective line integrals."""
    size = cfg.size
    n = max(size // 4, 32)  # built at 1/16 of the pixels: the background is smooth
    scale = size / n
    mm_per_px = cfg.pixel_spacing_mm * scale
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    total = 1.2 + rng.uniform(*cfg.soft_tissue_texture) * smooth_field(rng, (n, n), 4)
    total += rng.uniform(*cfg.fine_texture) * smooth_field(rng, (n, n), 24)
    total += _heart_shadow(cfg, yy, xx, np.asarray(ellipse_centre_px) / scale, np.asarray(ellipse_cov_px) / scale**2, rng.uniform(*cfg.heart_shadow))
    if rng.random() < cfg.spine_probability:
        total += _spine(rng, cfg, yy, xx, mm_per_px)
    total += _ribs(rng, cfg, yy, xx, mm_per_px)
    if rng.random() < cfg.diaphragm_probability:
        total += _diaphragm(rng, cfg, yy, xx, mm_per_px)
    if rng.random() < cfg.collimator_probability:
        total += _collimator(rng, cfg, yy, xx, mm_per_px)
    up = F.interpolate(torch.from_numpy(total.astype(np.float32))[None, None], size=(size, size), mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


def small_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur for sigma <~ 1.5 px as weighted shifted slices (edge-padded).

    Twice as fast as ``scipy.ndimage.gaussian_filter`` at these sizes, and this runs twice
    per frame on the generator's hot path.
    """
    radius = max(1, int(np.ceil(2.5 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2.0 * sigma**2))
    kernel = (kernel / kernel.sum()).astype(np.float32)
    h, w = image.shape
    padded = np.pad(image.astype(np.float32, copy=False), radius, mode="edge")
    rows = np.zeros((h + 2 * radius, w), dtype=np.float32)
    for i, k in enumerate(kernel):
        rows += k * padded[:, i : i + w]
    out = np.zeros((h, w), dtype=np.float32)
    for i, k in enumerate(kernel):
        out += k * rows[i : i + h]
    return out


def low_pass(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Wide low-pass (about 4 px sigma at 512) for the unsharp mask: block-mean down, blur, up."""
    h, w = image.shape
    small = image[: h - h % factor, : w - w % factor].reshape(h // factor, factor, w // factor, factor).mean((1, 3))
    small = gaussian_filter(small, 1.0, mode="nearest")
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(small))[None, None], size=(h, w), mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


@functools.lru_cache(maxsize=8)
def _corner_distance2(n: int) -> np.ndarray:
    """Squared distance from the image centre, 1 at the corners."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    out = ((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (2 * (n / 2) ** 2)
    out.setflags(write=False)
    return out


@dataclass
class Detector:
    """Imaging-chain settings of one acquisition (fixed over a cine so frames do not flicker)."""

    photons: float
    electronic_noise: float
    focal_blur: float
    detector_blur: float
    edge_gain: float
    gamma: float
    vignetting: np.ndarray
    window: tuple = (0.0, 1.0)
    """Log-signal values shown as white and black."""

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: SynthConfig, background: np.ndarray) -> "Detector":
        n = cfg.size
        det = cls(
            photons=rng.uniform(*cfg.photons_per_pixel) * (512 / n) ** 2,  # quanta scale with pixel area
            electronic_noise=rng.uniform(*cfg.electronic_noise),
            focal_blur=rng.uniform(*cfg.focal_spot_blur_px) * n / 512,
            detector_blur=rng.uniform(*cfg.detector_blur_px) * n / 512,
            edge_gain=rng.uniform(*cfg.edge_enhancement),
            gamma=rng.uniform(*cfg.display_gamma),
            vignetting=(1.0 - rng.uniform(*cfg.vignetting) * _corner_distance2(n)).astype(np.float32),
        )
        # display window from the vessel-free background, with head-room for dark contrast
        log_bg = (background - np.log(det.vignetting))[::4, ::4]  # a subsample is enough for percentiles
        lo, hi = np.percentile(log_bg, [0.5, 99.5])
        white, span = rng.uniform(*cfg.display_white), rng.uniform(*cfg.display_span)
        black = lo + (hi - lo) * white / span  # log signal shown as 0
        det.window = (float(black - (hi - lo) / span), float(black))
        return det

    def expose(self, rng: Optional[np.random.Generator], line_integral: np.ndarray) -> np.ndarray:
        """Total line integrals [H, W] -> displayed frame in [0, 1] (dark = attenuating).
        ``rng`` None: without quantum noise (what the display shows of the scene itself)."""
        fluence = self.vignetting * np.exp(-line_integral.astype(np.float32, copy=False))
        quanta = small_blur(fluence, self.focal_blur) * np.float32(self.photons)
        if rng is not None:
            # Poisson quanta plus electronic noise, by their normal approximation: quanta >= ~50
            # here, where it is accurate, and one normal draw is several times cheaper.
            noise = rng.standard_normal(quanta.shape, dtype=np.float32)
            quanta += np.sqrt(quanta + np.float32(self.electronic_noise**2)) * noise
        quanta = small_blur(quanta, self.detector_blur)
        log_image = -np.log(np.clip(quanta * np.float32(1.0 / self.photons), 1e-4, None))
        if self.edge_gain > 0:
            log_image += np.float32(self.edge_gain) * (log_image - low_pass(log_image))
        lo, hi = self.window
        display = np.clip((hi - log_image) * (1.0 / (hi - lo)), 0.0, 1.0)
        if self.gamma != 1.0:
            display **= self.gamma
        return display.astype(np.float32, copy=False)
