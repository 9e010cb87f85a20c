"""C-arm view, cardiac motion and projection of the heart model onto the detector.

The heart's long axis points left, anterior and inferior (about 45 degrees to each body axis);
the C-arm view is a LAO/RAO rotation about the body's long axis followed by a cranial/caudal
tilt, then a small in-plane rotation. Projection is orthographic with a zoom: at coronary
magnifications (SID/SOD about 1.3-1.4) the perspective difference across the heart is small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .config import SynthConfig
from .coronary_tree import CoronaryTree


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _orthonormal(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def heart_axes_in_body(rng: np.random.Generator) -> np.ndarray:
    """3x3 matrix whose columns are the heart axes (e1 anterior groove, e2, e3 base->apex) in
    body coordinates (left, posterior, superior), with a little anatomical variation."""
    apex = _orthonormal(np.array([1.0, -1.0, -1.0]) + rng.normal(0, 0.12, 3))
    anterior = np.array([0.0, -1.0, 0.0])
    e1 = _orthonormal(anterior - anterior.dot(apex) * apex)
    e2 = np.cross(apex, e1)
    return np.stack([e1, e2, apex], axis=1)


@dataclass
class ViewPose:
    heart_to_body: np.ndarray
    body_to_camera: np.ndarray
    scale_px_per_mm: float
    centre_px: np.ndarray
    """Pixel position of the heart centre."""

    def project(self, body_mm: np.ndarray) -> np.ndarray:
        """[N, 3] body mm -> [N, 3] (x px, y px, depth mm)."""
        cam = body_mm @ self.body_to_camera.T
        xy = cam[:, :2] * self.scale_px_per_mm + self.centre_px
        return np.concatenate([xy, cam[:, 2:3]], axis=1)


MIN_VIEW_TO_LONG_AXIS_DEG = 35.0
"""Views closer to the heart's long axis turn the tree into a ring; clinicians avoid them."""


def sample_view(rng: np.random.Generator, cfg: SynthConfig) -> ViewPose:
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # AP: x = left, y = inferior
    heart = heart_axes_in_body(rng)
    for _ in range(50):
        lao = np.deg2rad(rng.uniform(*cfg.lao_rao_deg))
        cran = np.deg2rad(rng.uniform(*cfg.cranial_caudal_deg))
        roll = np.deg2rad(rng.uniform(*cfg.in_plane_rotation_deg))
        body_to_camera = _rot(2, roll) @ base @ _rot(0, cran) @ _rot(2, lao)
        if abs(body_to_camera[2] @ heart[:, 2]) < np.cos(np.deg2rad(MIN_VIEW_TO_LONG_AXIS_DEG)):
            break
    scale = rng.uniform(*cfg.zoom) / cfg.pixel_spacing_mm
    return ViewPose(heart, body_to_camera, scale, np.zeros(2))


@dataclass
class CardiacMotion:
    period_s: float
    contraction: float
    twist_rad: float
    phase: float
    shift_mm: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: SynthConfig) -> "CardiacMotion":
        return cls(
            period_s=60.0 / rng.uniform(*cfg.heart_rate_bpm),
            contraction=rng.uniform(*cfg.contraction),
            twist_rad=rng.uniform(0.05, 0.15),
            phase=rng.uniform(0, 2 * np.pi),
            shift_mm=rng.normal(0, 2.0, 3),
        )

    def systole(self, t_s: float) -> float:
        """0 at end-diastole, 1 at end-systole; systole takes about a third of the cycle."""
        x = ((t_s / self.period_s) + self.phase / (2 * np.pi)) % 1.0
        return float(np.sin(np.pi * min(x / 0.4, 1.0)) ** 2 if x < 0.4 else 0.0)

    def heart_to_local_mm(self, unit: np.ndarray, semi_axes: np.ndarray, t_s: float) -> np.ndarray:
        """Unit heart coordinates -> mm in heart axes at time t (contraction and apical twist)."""
        c = self.systole(t_s)
        axes = semi_axes * (1.0 - c * self.contraction * np.array([1.0, 1.0, 0.6]))
        mm = unit * axes
        # apex rotates against the base: twist grows from base (z = -1) to apex (z = +1)
        angle = c * self.twist_rad * 0.5 * (np.clip(unit[:, 2], -1.0, 1.0) + 1.0)
        cos, sin = np.cos(angle), np.sin(angle)
        x, y = mm[:, 0] * cos - mm[:, 1] * sin, mm[:, 0] * sin + mm[:, 1] * cos
        return np.stack([x, y, mm[:, 2]], axis=1) + c * self.shift_mm


def unit_to_image(tree: CoronaryTree, pose: ViewPose, motion: CardiacMotion, unit: np.ndarray, t_s: float) -> np.ndarray:
    body = motion.heart_to_local_mm(unit, tree.semi_axes_mm, t_s) @ pose.heart_to_body.T
    return pose.project(body)


def centre_on_tree(rng: np.random.Generator, cfg: SynthConfig, tree: CoronaryTree, pose: ViewPose, motion: CardiacMotion) -> None:
    """Place the heart so the tree's bounding box sits near the image centre (with jitter)."""
    pts = np.concatenate([unit_to_image(tree, pose, motion, b.unit, 0.0)[:, :2] for b in tree.branches])
    bbox_centre = 0.5 * (pts.min(0) + pts.max(0))
    jitter = rng.uniform(-1, 1, 2) * cfg.centre_jitter * cfg.size
    pose.centre_px = pose.centre_px + (cfg.size / 2.0 - bbox_centre) + jitter


def catheter_body_mm(rng: np.random.Generator, tree: CoronaryTree, pose: ViewPose, motion: CardiacMotion) -> np.ndarray:
    """Guiding catheter from the ostium back up the ascending aorta, in body mm at t = 0.

    Judkins-like shape: the tip engages the ostium, a secondary curve rests against the
    opposite aortic wall, then the shaft runs straight up and out of the field.
    """
    ostium_unit = tree.branches[0].unit[:1]
    ostium = motion.heart_to_local_mm(ostium_unit, tree.semi_axes_mm, 0.0) @ pose.heart_to_body.T
    root_unit = np.array([[0.0, 0.0, -1.25]])
    root = motion.heart_to_local_mm(root_unit, tree.semi_axes_mm, 0.0) @ pose.heart_to_body.T
    superior = np.array([0.0, 0.0, 1.0])
    away = _orthonormal((root - ostium)[0] + 1e-6)
    wall = root[0] + away * rng.uniform(8, 15) - superior * rng.uniform(5, 15)
    control = np.stack(
        [
            ostium[0],
            ostium[0] + superior * rng.uniform(4, 10) + away * 4,
            wall,
            root[0] + superior * 45 + rng.normal(0, 6, 3),
            root[0] + superior * 300 + rng.normal(0, 30, 3),
        ]
    )
    seg = np.linalg.norm(np.diff(control, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    s = np.arange(0.0, cum[-1], 0.5)
    path = np.stack([np.interp(s, cum, control[:, k]) for k in range(3)], axis=1)
    chord = path[0] + (path[-1] - path[0]) * (s / s[-1])[:, None]
    return chord + gaussian_filter1d(path - chord, 12.0, axis=0, mode="constant")


def catheter_at(catheter_body: np.ndarray, tree: CoronaryTree, pose: ViewPose, motion: CardiacMotion, t_s: float) -> np.ndarray:
    """The catheter tip follows the ostium; the shaft far from the tip stays put."""
    ostium_unit = tree.branches[0].unit[:1]
    moved = motion.heart_to_local_mm(ostium_unit, tree.semi_axes_mm, t_s) @ pose.heart_to_body.T
    rest = motion.heart_to_local_mm(ostium_unit, tree.semi_axes_mm, 0.0) @ pose.heart_to_body.T
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(catheter_body, axis=0), axis=1))])
    follow = np.exp(-arc / 40.0)[:, None]
    return pose.project(catheter_body + follow * (moved - rest))
