"""Synthetic X-ray coronary angiograms with exact vessel, guidewire and catheter masks.

    >>> from angiokit.data.synthetic import SynthConfig, synthesize
    >>> sample = synthesize(SynthConfig(size=256, frames=12), seed=0)
    >>> sample.image.shape, sample.vessel.shape      # [T, H, W] float32 in [0, 1], uint8 {0, 1}

One seed gives one scene (tree, view, devices, background, imaging chain) and, for a cine, its
contrast wash-in / wash-out and cardiac motion; the same seed always gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .config import SynthConfig
from .coronary_tree import CoronaryTree, generate_coronary_tree
from .heart_view import CardiacMotion, ViewPose, catheter_at, catheter_body_mm, centre_on_tree, sample_view, unit_to_image
from .tube_raster import Tube, rasterize_tubes, resample_for_raster
from .xray import Detector, background_line_integral, circular_field

VESSEL, GUIDEWIRE, CATHETER = 0, 1, 2
"""Mask groups of the rasteriser."""
MAX_FORESHORTENING = 2.0
"""Cap on 1 / sin(theta): a vessel seen end-on is bounded by its own length, not infinite."""


@dataclass
class SyntheticAngiogram:
    image: np.ndarray
    """[T, H, W] float32 in [0, 1]; vessels are dark."""
    vessel: np.ndarray
    """[T, H, W] uint8 {0, 1}: contrast-filled lumen (fill >= ``mask_contrast_threshold``)."""
    guidewire: np.ndarray
    """[T, H, W] uint8 {0, 1} (all zero when the scene has no guidewire)."""
    catheter: np.ndarray
    """[T, H, W] uint8 {0, 1}."""
    pixel_spacing_mm: float
    frame_time_ms: float
    meta: Dict = field(default_factory=dict)
    vessel_line_integral: Optional[np.ndarray] = None
    """[T, H, W] float32: the iodine's line integral alone (what the vessels add to the log
    signal; ``synthesize(..., vessel_layer=True)``), for compositing the vessels onto other
    backgrounds (``angiokit.data.domain.CompositeOnRealBackgroundd``)."""

    @property
    def frames(self) -> int:
        return self.image.shape[0]


@dataclass
class _Timing:
    arrival_s: float
    washout_s: float
    front_speed: float
    washout_tau: float
    single_frame: bool

    def fill(self, path_mm: np.ndarray, t_s: float) -> np.ndarray:
        """Contrast fill in [0, 1] at distance ``path_mm`` from the ostium at time t."""
        if self.single_frame:
            return np.ones_like(path_mm)
        front = self.front_speed * (t_s - self.arrival_s)
        filled = 1.0 / (1.0 + np.exp(-(front - path_mm) / 6.0))
        decay = 1.0 if t_s < self.washout_s else float(np.exp(-(t_s - self.washout_s) / self.washout_tau))
        return filled * decay

    def catheter_fill(self, t_s: float) -> float:
        if self.single_frame:
            return 1.0
        injecting = self.arrival_s - 0.15 <= t_s <= self.washout_s
        return 1.0 if injecting else 0.1


class AngiogramScene:
    """Everything drawn once per sample; ``render(t)`` makes one frame of it."""

    def __init__(self, cfg: SynthConfig, seed: int, device: str = "cpu"):
        self.cfg, self.seed, self.device = cfg, int(seed), device
        rng = np.random.default_rng(self.seed)
        self.rng = rng
        self.tree: CoronaryTree = generate_coronary_tree(rng, cfg)
        self.pose: ViewPose = sample_view(rng, cfg)
        self.motion = CardiacMotion.sample(rng, cfg)
        centre_on_tree(rng, cfg, self.tree, self.pose, self.motion)
        self.catheter_body = catheter_body_mm(rng, self.tree, self.pose, self.motion)
        self.has_guidewire = bool(rng.random() < cfg.guidewire_probability)
        self.wire_offset_seed = int(rng.integers(2**31))
        self.mu_iodine = rng.uniform(*cfg.iodine_attenuation_per_mm)
        self.mu_wire = rng.uniform(*cfg.guidewire_attenuation_per_mm)
        duration = cfg.frames * cfg.frame_time_ms / 1000.0
        self.timing = _Timing(
            arrival_s=rng.uniform(*cfg.contrast_arrival_fraction) * duration,
            washout_s=rng.uniform(*cfg.contrast_washout_fraction) * duration,
            front_speed=rng.uniform(*cfg.contrast_front_speed_mm_per_s),
            washout_tau=rng.uniform(*cfg.washout_time_s),
            single_frame=cfg.frames == 1,
        )
        self.t0 = rng.uniform(0, self.motion.period_s)  # cardiac phase of the first frame
        centre, cov = self._heart_ellipse()
        self.background = background_line_integral(rng, cfg, centre, cov)
        self.detector = Detector.sample(rng, cfg, self.background)
        self.field = None  # [H, W] bool: the exposed round field, where there is one
        if cfg.circular_field_probability > 0 and rng.random() < cfg.circular_field_probability:
            # after the display window is set (from the exposed anatomy), so black stays black
            self.field = circular_field(rng, cfg)
            self.background = self.background + np.float32(8.0) * (~self.field)

    # ---- geometry per frame ----------------------------------------------------------------

    def _heart_ellipse(self):
        m = self.pose.body_to_camera @ self.pose.heart_to_body @ np.diag(self.tree.semi_axes_mm)
        cov = (m @ m.T)[:2, :2] * self.pose.scale_px_per_mm**2
        return self.pose.centre_px, cov

    def _foreshortening(self, image_pts: np.ndarray, body_mm_len: np.ndarray) -> np.ndarray:
        in_plane = np.linalg.norm(np.gradient(image_pts[:, :2], axis=0), axis=1) / self.pose.scale_px_per_mm
        return np.clip(body_mm_len / np.maximum(in_plane, 1e-9), 1.0, MAX_FORESHORTENING)

    def _tube(self, pts: np.ndarray, mm_step: np.ndarray, radius_mm: np.ndarray, weight_per_mm: np.ndarray, in_mask: np.ndarray) -> Tube:
        r_px = radius_mm * self.pose.scale_px_per_mm
        weight = weight_per_mm * self._foreshortening(pts, mm_step) / self.pose.scale_px_per_mm
        keep = resample_for_raster(pts[:, :2], r_px)
        return Tube(pts[keep, :2], r_px[keep], weight[keep], in_mask[keep])

    def _vessel_tubes(self, t_s: float, fill_scale: float) -> List[Tube]:
        tubes = []
        thr = self.cfg.mask_contrast_threshold
        for b in self.tree.branches:
            pts = unit_to_image(self.tree, self.pose, self.motion, b.unit, t_s)
            fill = self.timing.fill(b.path_mm, t_s - self.t0) * fill_scale
            mm_step = np.linalg.norm(np.gradient(b.unit * self.tree.semi_axes_mm, axis=0), axis=1)
            tubes.append(self._tube(pts, mm_step, b.radius_mm, self.mu_iodine * fill, fill >= thr))
        return tubes

    def _catheter_tubes(self, t_s: float, fill_scale: float) -> List[Tube]:
        pts = catheter_at(self.catheter_body, self.tree, self.pose, self.motion, t_s)
        n = len(pts)
        mm_step = np.full(n, 0.5)
        r = self.cfg.catheter_radius_mm
        ones = np.ones(n, dtype=bool)
        wall = self._tube(pts, mm_step, np.full(n, r), np.full(n, self.cfg.catheter_wall_attenuation_per_mm), ones)
        fill = self.timing.catheter_fill(t_s - self.t0) * fill_scale
        lumen = self._tube(pts, mm_step, np.full(n, 0.75 * r), np.full(n, self.mu_iodine * fill), ones)
        wall.mask_group = lumen.mask_group = CATHETER
        return [wall, lumen]

    def _guidewire_tube(self, t_s: float) -> List[Tube]:
        if not self.has_guidewire:
            return []
        cath = catheter_at(self.catheter_body, self.tree, self.pose, self.motion, t_s)[::-1]
        parts, radii, steps = [cath], [np.zeros(len(cath))], [np.full(len(cath), 0.5)]
        for bi, last in self.tree.guidewire_route:
            b = self.tree.branches[bi]
            parts.append(unit_to_image(self.tree, self.pose, self.motion, b.unit[: last + 1], t_s))
            radii.append(b.radius_mm[: last + 1])
            steps.append(np.linalg.norm(np.gradient(b.unit[: last + 1] * self.tree.semi_axes_mm, axis=0), axis=1))
        pts, lumen_mm, mm_step = np.concatenate(parts), np.concatenate(radii), np.concatenate(steps)
        # the wire wanders across the lumen, never through the wall
        wrng = np.random.default_rng(self.wire_offset_seed)
        wander = np.tanh(gaussian_filter1d(wrng.standard_normal(len(pts)), 25.0) * 8.0)
        slack_px = np.maximum(lumen_mm - self.cfg.guidewire_radius_mm, 0.0) * 0.8 * self.pose.scale_px_per_mm
        tangent = np.gradient(pts[:, :2], axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / (np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9)
        pts = pts.copy()
        pts[:, :2] += normal * (wander * slack_px)[:, None]
        from_tip = np.cumsum(mm_step[::-1])[::-1]
        mu = self.mu_wire * np.where(from_tip <= self.cfg.guidewire_tip_mm, self.cfg.guidewire_tip_factor, 1.0)
        n = len(pts)
        wire = self._tube(pts, mm_step, np.full(n, self.cfg.guidewire_radius_mm), mu, np.ones(n, dtype=bool))
        wire.mask_group = GUIDEWIRE
        return [wire]

    # ---- rendering -------------------------------------------------------------------------

    def frame_time_s(self, index: int) -> float:
        return self.t0 + index * self.cfg.frame_time_ms / 1000.0

    def render(self, t_s: float, contrast: float = 1.0):
        """One frame at time t: (image, vessel, guidewire, catheter) as numpy [H, W].

        ``contrast`` scales the iodine (0 gives the contrast-free fluoroscopy frame of the same
        moment, with the same devices and anatomy).
        """
        shape = (self.cfg.size, self.cfg.size)
        tubes = self._vessel_tubes(t_s, contrast) + self._catheter_tubes(t_s, contrast) + self._guidewire_tube(t_s)
        devices, masks = rasterize_tubes(tubes, shape, mask_groups=3, device=self.device)
        image = self.detector.expose(self.rng, self.background + devices.cpu().numpy())
        masks = masks.cpu().numpy()
        if self.field is not None:
            masks &= self.field  # nothing shows outside the exposed field
        vessel = masks[VESSEL] & ~masks[CATHETER]  # the catheter tip sits in the ostium
        return image, vessel.astype(np.uint8), masks[GUIDEWIRE].astype(np.uint8), masks[CATHETER].astype(np.uint8)

    def vessel_line_integral(self, t_s: float, contrast: float = 1.0) -> np.ndarray:
        """[H, W] line integral of the contrast-filled vessels alone at time t (no catheter, no
        guidewire, no background); draws no random numbers, so frames stay as they were."""
        integral = rasterize_tubes(self._vessel_tubes(t_s, contrast), (self.cfg.size, self.cfg.size), device=self.device)[0].cpu().numpy()
        return integral * self.field if self.field is not None else integral


def synthesize(cfg: Optional[SynthConfig] = None, seed: int = 0, device: str = "cpu", vessel_layer: bool = False) -> SyntheticAngiogram:
    """Generate one sample (a single frame or a cine of ``cfg.frames`` frames); ``vessel_layer``
    also returns the vessels' own line integral (``SyntheticAngiogram.vessel_line_integral``)."""
    cfg = cfg or SynthConfig()
    scene = AngiogramScene(cfg, seed, device)
    frames = [scene.render(scene.frame_time_s(i)) for i in range(cfg.frames)]
    image, vessel, wire, cath = (np.stack(x) for x in zip(*frames))
    layer = np.stack([scene.vessel_line_integral(scene.frame_time_s(i)) for i in range(cfg.frames)]) if vessel_layer else None
    meta = {
        "seed": int(seed),
        "side": scene.tree.side,
        "has_guidewire": scene.has_guidewire,
        "branches": [b.name for b in scene.tree.branches],
        "heart_rate_bpm": 60.0 / scene.motion.period_s,
    }
    return SyntheticAngiogram(image, vessel, wire, cath, cfg.pixel_spacing_mm, cfg.frame_time_ms, meta, layer)
