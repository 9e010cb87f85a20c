"""Rendering of one benchmark case: F, C and the degraded S of one moment of a synthetic cine, and
the damage S visibly took (``QualityScene``)."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
from scipy.ndimage import gaussian_filter, shift

from ..synthetic import AngiogramScene, SynthConfig
from ..synthetic.tube_raster import Tube, rasterize_tubes
from ..synthetic.xray import smooth_field
from .failures import Failure
from .labels import WIRE_CONTRAST_FLOOR

# the main vessels: the branch failures leave them in place and hit side branches only
MAIN_BRANCHES = ("left_main", "lad", "lcx", "rca")


def _cut(tube: Tube, start: float, stop: float) -> Tube:
    """Zero the attenuation of the tube between fractions [start, stop) of its length."""
    n = len(tube.xy)
    w = tube.weight.copy()
    w[int(start * n) : max(int(stop * n), int(start * n) + 1)] = 0.0
    return Tube(tube.xy, tube.radius_px, w, tube.in_mask, tube.mask_group)


def _scaled(tube: Tube, factor: float) -> Tube:
    return Tube(tube.xy, tube.radius_px, tube.weight * factor, tube.in_mask, tube.mask_group)


def _visible_loss(without: np.ndarray, before: np.ndarray, after: np.ndarray, of: Optional[np.ndarray] = None, floor: float = 0.0) -> float:
    """The share of a structure's displayed contrast that is missing from where it was.

    Noise-free displayed frames (dark = attenuating): ``without`` the structure, ``before`` and
    ``after`` the failure. Its contrast is how much darker it makes a pixel than ``without``;
    the loss, summed where ``after`` is lighter than ``before``, is divided by the contrast of
    ``of`` (default: the structure before), or by ``floor`` (a summed contrast) where that is
    more. Display, not attenuation: a wire faded but still black where the window clips it has
    lost nothing a rater can see."""
    contrast_before = np.clip(without - before, 0, None)
    contrast_after = np.clip(without - after, 0, None)
    total = max(float(contrast_before.sum() if of is None else of.sum()), float(floor))
    return float(np.clip(contrast_before - contrast_after, 0, None).sum()) / total if total > 0 else 0.0


class QualityScene:
    """Renders F, C and a degraded S of one moment of an ``AngiogramScene``."""

    def __init__(self, cfg: SynthConfig, seed: int):
        self.scene = AngiogramScene(cfg, seed)
        self.rng = np.random.default_rng(seed + 1)
        self.cfg = cfg

    def _tubes(self, t_s: float, contrast: float):
        sc = self.scene
        vessels = sc._vessel_tubes(t_s, contrast)
        return vessels, sc._catheter_tubes(t_s, contrast), sc._guidewire_tube(t_s)

    def _line_integral(self, vessels, catheter, wire) -> np.ndarray:
        shape = (self.cfg.size, self.cfg.size)
        total, _ = rasterize_tubes(vessels + catheter + wire, shape, mask_groups=3)
        return total.numpy()

    def render_all(self, failure: Failure, t_s: Optional[float] = None) -> Dict[str, np.ndarray]:
        """{"fluoro": F, "contrast": C, "synthetic": S} as float images in [0, 1]; the damage
        the guidewire and branch failures visibly did is left in ``self.damage`` (the labels'
        severities, see ``visible_severities``)."""
        sc, rng = self.scene, self.rng
        t_s = sc.frame_time_s(0) if t_s is None else t_s
        vessels, catheter, wire = self._tubes(t_s, 1.0)
        contrast_integral = sc.background + self._line_integral(vessels, catheter, wire)
        images = {"fluoro": sc.render(t_s, contrast=0.0)[0], "contrast": sc.detector.expose(rng, contrast_integral)}
        names = [b.name for b in sc.tree.branches]
        side = [i for i, n in enumerate(names) if n not in MAIN_BRANCHES]
        wire_before, vessels_before = self._line_integral([], [], wire), self._line_integral(vessels, [], [])
        side_before = self._line_integral([v for i, v in enumerate(vessels) if i in side], [], [])
        bare_integral = sc.background + self._line_integral([], sc._catheter_tubes(t_s, 0.0), wire)  # F, noise-free

        # guidewire failures
        if failure.guidewire > 0 and wire:
            s, w = failure.guidewire, wire[0]
            if failure.guidewire_mode == "fade":
                wire = [_scaled(w, 1.0 - 0.95 * s)]
            elif failure.guidewire_mode == "break":
                for _ in range(int(rng.integers(1, 4))):
                    start = rng.uniform(0.2, 0.9)
                    w = _cut(w, start, start + 0.5 * s / 2)
                wire = [w]
            else:  # erase the distal part, the wire's business end
                wire = [_cut(w, 1.0 - 0.9 * s, 1.0)]
        # branch failures (side branches only: the main vessels stay)
        if failure.branch > 0 and side:
            s = failure.branch
            chosen = set(rng.choice(side, size=max(1, int(round(s * len(side)))), replace=False).tolist())
            mode = failure.branch_mode
            if mode == "drop":
                vessels = [v for i, v in enumerate(vessels) if i not in chosen]
            elif mode == "break":
                vessels = [_cut(v, rng.uniform(0.1, 0.5), rng.uniform(0.55, 0.95)) if i in chosen else v for i, v in enumerate(vessels)]
            elif mode == "wash":
                vessels = [_scaled(v, 1.0 - 0.9 * s) if i in chosen else v for i, v in enumerate(vessels)]
        integral = self._line_integral(vessels, catheter, wire)
        vessel_part = self._line_integral(vessels, [], [])
        if failure.branch > 0 and failure.branch_mode == "blur":
            blurred = gaussian_filter(vessel_part, 0.5 + 3.0 * failure.branch)
            integral, vessel_part = integral - vessel_part + blurred, blurred
        # artifacts in the attenuation domain
        a = failure.artifact
        if a > 0:
            integral = integral + self._artifacts(a, failure.artifact_modes, vessel_part)
        synthetic = sc.detector.expose(rng, sc.background + integral)
        if a > 0 and "checkerboard" in failure.artifact_modes:
            period = int(rng.integers(2, 5)) * max(1, self.cfg.size // 256)
            yy, xx = np.mgrid[0 : self.cfg.size, 0 : self.cfg.size]
            board = ((yy // period + xx // period) % 2) * 2.0 - 1.0
            synthetic = np.clip(synthetic + 0.06 * a * board, 0, 1).astype(np.float32)
        images["synthetic"] = synthetic
        self.damage = self._visible_damage(contrast_integral, wire_before, self._line_integral([], [], wire), vessels_before, vessel_part, side_before, bare_integral)
        return images

    def _visible_damage(self, contrast_integral, wire_before, wire_after, vessels_before, vessels_after, side_before, bare_integral) -> Dict[str, float]:
        """What S visibly lost, on noise-free displays of the scene (artifacts left out): the
        share of the wire's displayed contrast, and of the side branches' (the loss counted over
        all vessels: a blur blurs the main vessels too).

        The wire's share is of at least ``WIRE_CONTRAST_FLOOR`` of its contrast on the bare
        background (``bare_integral``, F's): where C barely shows the wire (inside iodine-filled
        vessels), losing those few pixels is a loss no rater can see, not a wire "wholly lost"."""
        def show(integral):
            return self.scene.detector.expose(None, integral)

        before = show(contrast_integral)
        no_wire, no_vessels = contrast_integral - wire_before, contrast_integral - vessels_before
        side_contrast = np.clip(show(contrast_integral - side_before) - before, 0, None)
        bare_wire_contrast = float(np.clip(show(bare_integral - wire_before) - show(bare_integral), 0, None).sum())
        return {
            "guidewire": _visible_loss(show(no_wire), before, show(no_wire + wire_after), floor=WIRE_CONTRAST_FLOOR * bare_wire_contrast),
            "branch": _visible_loss(show(no_vessels), before, show(no_vessels + vessels_after), of=side_contrast),
        }

    def _artifacts(self, a: float, modes: List[str], vessel_part: np.ndarray) -> np.ndarray:
        rng, n = self.rng, self.cfg.size
        extra = np.zeros((n, n), dtype=np.float32)
        if "fragments" in modes:  # hallucinated vessel pieces, unconnected to the tree
            tubes = []
            px_per_mm = self.scene.pose.scale_px_per_mm
            for _ in range(1 + int(round(6 * a))):
                start = rng.uniform(0.1, 0.9, 2) * n
                angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, 40))
                xy = start + np.cumsum(np.stack([np.cos(angle), np.sin(angle)], 1) * 0.5 * px_per_mm, 0)  # 0.5 mm steps
                r = np.full(len(xy), rng.uniform(0.5, 1.2) * px_per_mm)
                weight = self.scene.mu_iodine / px_per_mm * rng.uniform(0.6, 1.2)  # like a real branch
                tubes.append(Tube(xy, r, np.full(len(xy), weight), np.ones(len(xy), bool)))
            extra += rasterize_tubes(tubes, (n, n))[0].numpy()
        if "ghost" in modes:  # a shifted second copy of the vessels: double contours
            offset = rng.uniform(2, 6, 2) * rng.choice([-1, 1], 2) * n / 256
            extra += 0.6 * a * shift(vessel_part, offset, order=1, mode="constant")
        if "streaks" in modes:
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            for _ in range(int(rng.integers(1, 4))):
                theta, c = rng.uniform(0, np.pi), rng.uniform(0.2, 0.8) * n
                d = xx * np.cos(theta) + yy * np.sin(theta) - c
                extra += rng.choice([-1, 1]) * 0.25 * a * np.exp(-(d**2) / (2 * (rng.uniform(0.5, 2.5) * n / 256) ** 2))
        if "blotches" in modes:
            extra += 0.35 * a * np.clip(smooth_field(rng, (n, n), 6), 0, None)
        return extra


def quality_config(size: int = 256) -> SynthConfig:
    """Interventional frames: always a guidewire, clearly radiopaque (steel shaft, platinum tip)."""
    return SynthConfig(size=int(size), guidewire_probability=1.0, guidewire_attenuation_per_mm=(1.0, 1.6), guidewire_tip_factor=3.0)
