"""Coronary-like vessel trees on a beating ellipsoidal heart.

Vessels are generated in 3-D on the epicardial surface of an ellipsoid (the left and right
ventricles), so a projection gives what a real angiogram shows: foreshortening, vessels in front
of and behind the heart crossing each other, and motion that follows the heart's contraction.

Coordinates
    *unit*   ellipsoid-normalised heart coordinates: the surface is |u| = 1 after dividing by the
             semi-axes; (phi, v) are longitude and colatitude, v = 0 at the base, v = pi at the apex.
    *body*   millimetres, patient axes (left, posterior, superior).
    *image*  pixels, (x = column, y = row), plus depth in mm.

Anatomy (simplified, after the AHA segment model): the left tree has a left main that splits
into the LAD (anterior interventricular groove to the apex, with diagonals and septals) and the
LCx (left atrioventricular groove, with obtuse marginals); the right tree is the RCA along the
right AV groove to the crux, with conus, RV / acute-marginal branches, PDA and PLV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .config import SynthConfig

PI = np.pi


@dataclass
class VesselBranch:
    name: str
    unit: np.ndarray
    """[N, 3] centreline in unit heart coordinates."""
    radius_mm: np.ndarray
    """[N] lumen radius."""
    parent: int = -1
    parent_index: int = 0
    path_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """[N] distance from the ostium along the tree (filled by ``CoronaryTree.finalise``)."""
    surface_param: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """[N, 3] (phi, v, height) when the branch runs on the surface; empty for septals."""


@dataclass
class CoronaryTree:
    side: str
    """"left" or "right"."""
    branches: List[VesselBranch]
    semi_axes_mm: np.ndarray
    guidewire_route: List[Tuple[int, int]]
    """(branch, last sample) pairs, proximal first: the vessels a guidewire would follow."""

    def finalise(self) -> "CoronaryTree":
        """Compute path lengths from the ostium (parents always precede children)."""
        for branch in self.branches:
            mm = branch.unit * self.semi_axes_mm
            seg = np.linalg.norm(np.diff(mm, axis=0), axis=1)
            own = np.concatenate([[0.0], np.cumsum(seg)])
            start = 0.0 if branch.parent < 0 else self.branches[branch.parent].path_mm[branch.parent_index]
            branch.path_mm = start + own
        return self


# ---- curves in surface parameters ----------------------------------------------------------


def surface_to_unit(param: np.ndarray) -> np.ndarray:
    """(phi, v, height) [N, 3] -> unit coordinates [N, 3] (height is a radial offset)."""
    phi, v, h = param[:, 0], param[:, 1], param[:, 2]
    scale = 1.0 + h
    return np.stack([np.sin(v) * np.cos(phi), np.sin(v) * np.sin(phi), -np.cos(v)], axis=1) * scale[:, None]


def _smooth_polyline(control: np.ndarray, n: int, smooth: float = 0.06) -> np.ndarray:
    """Sample a control polyline at n points evenly in its arc length, then round its corners."""
    seg = np.linalg.norm(np.diff(control[:, :2], axis=0), axis=1) + 1e-9
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, cum[-1], n)
    out = np.stack([np.interp(s, cum, control[:, k]) for k in range(control.shape[1])], axis=1)
    if len(control) > 2 and smooth > 0:
        sigma = smooth * n
        # keep the end points where they are: smooth only the deviation from the chord
        chord = out[0] + (out[-1] - out[0]) * np.linspace(0, 1, n)[:, None]
        out = chord + gaussian_filter1d(out - chord, sigma, axis=0, mode="constant")
    return out


def _wiggle(rng: np.random.Generator, n: int, amplitude: float, freq: Tuple[float, float], terms: int, grow: bool):
    """Smooth random 1-D displacement, zero at the start."""
    s = np.linspace(0.0, 1.0, n)
    f = rng.uniform(*freq, size=terms)
    phase = rng.uniform(0, 2 * PI, size=terms)
    amp = amplitude * rng.uniform(0.5, 1.0, size=terms) / np.sqrt(terms)
    w = (amp[None] * (np.sin(2 * PI * f[None] * s[:, None] + phase[None]) - np.sin(phase[None]))).sum(1)
    return w * (s if grow else 1.0)


def surface_curve(
    rng: np.random.Generator, control: Sequence[Sequence[float]], n: int, sway: float, tortuosity: float
) -> np.ndarray:
    """A tortuous surface path through (phi, v, height) control points -> [n, 3] params."""
    path = _smooth_polyline(np.asarray(control, dtype=np.float64), n)
    tangent = np.gradient(path[:, :2], axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    lateral = _wiggle(rng, n, sway, (0.3, 1.2), 2, grow=False)
    lateral += _wiggle(rng, n, 0.012 * tortuosity, (3.0, 14.0), 5, grow=True)
    path[:, :2] += normal * lateral[:, None]
    path[:, 1] = np.clip(path[:, 1], 0.05, PI - 0.03)
    return path


def _taper(n: int, r0: float, r1: float) -> np.ndarray:
    """Radius along a branch: slow at first, faster distally, as in coronary casts."""
    return r0 + (r1 - r0) * np.linspace(0.0, 1.0, n) ** 1.6


def _point_param(branch: VesselBranch, index: int) -> np.ndarray:
    return branch.surface_param[index].copy()


class _TreeBuilder:
    """Adds branches to a tree; keeps the bookkeeping of parents and radii in one place."""

    def __init__(self, rng: np.random.Generator, cfg: SynthConfig):
        self.rng, self.cfg = rng, cfg
        self.branches: List[VesselBranch] = []
        self.tortuosity = rng.uniform(*cfg.tortuosity)
        self.distal = lambda: rng.uniform(*cfg.distal_radius_mm)

    def add(self, name, param, radius, parent=-1, parent_index=0) -> int:
        self.branches.append(
            VesselBranch(name, surface_to_unit(param), radius, parent, parent_index, surface_param=param)
        )
        return len(self.branches) - 1

    def add_stenosis(self, index: int) -> None:
        if self.rng.random() >= self.cfg.stenosis_probability:
            return
        b = self.branches[index]
        n = len(b.radius_mm)
        centre = self.rng.uniform(0.1, 0.6) * n
        width = self.rng.uniform(0.015, 0.04) * n
        severity = self.rng.uniform(*self.cfg.stenosis_severity)
        b.radius_mm = b.radius_mm * (1 - severity * np.exp(-(((np.arange(n) - centre) / width) ** 2)))

    def side_branch(self, parent: int, fraction: float, name: str, delta: Tuple[float, float], r0: float, n: int):
        """A child leaving ``parent`` at ``fraction`` of its length, heading by (dphi, dv)."""
        p = self.branches[parent]
        i = int(fraction * (len(p.radius_mm) - 1))
        start = _point_param(p, i)
        start[2] = 0.02
        mid = start + np.array([delta[0] * 0.35, delta[1] * 0.45, 0.0])
        end = start + np.array([delta[0], delta[1], 0.0])
        end[1] = np.clip(end[1], 0.1, PI - 0.05)
        param = surface_curve(self.rng, [start, mid, end], n, sway=0.08, tortuosity=self.tortuosity)
        r0 = min(r0, 0.8 * p.radius_mm[i])
        return self.add(name, param, _taper(n, r0, min(self.distal(), 0.8 * r0)), parent, i)

    def twigs(self, parent: int) -> None:
        lo, hi = self.cfg.twigs_per_branch
        for k in range(self.rng.integers(lo, hi + 1)):
            sign = self.rng.choice([-1.0, 1.0])
            delta = (sign * self.rng.uniform(0.06, 0.2) * PI, self.rng.uniform(0.04, 0.18) * PI)
            r0 = self.rng.uniform(*self.cfg.twig_radius_mm)
            self.side_branch(parent, self.rng.uniform(0.2, 0.85), f"{self.branches[parent].name}_twig{k}", delta, r0, 60)

    def septals(self, parent: int) -> None:
        """Septal perforators dive into the septum: straight-ish paths inward and apex-ward."""
        lo, hi = self.cfg.septal_branches
        p = self.branches[parent]
        for k in range(self.rng.integers(lo, hi + 1)):
            i = int(self.rng.uniform(0.08, 0.55) * (len(p.radius_mm) - 1))
            start = p.unit[i]
            inward = -start / np.linalg.norm(start)
            end = start + self.rng.uniform(0.25, 0.45) * inward + np.array([0, 0, self.rng.uniform(0.1, 0.3)])
            n = 40
            t = np.linspace(0, 1, n)[:, None]
            unit = start + t * (end - start)
            unit[:, :2] += _wiggle(self.rng, n, 0.02 * self.tortuosity, (1.0, 3.0), 2, grow=True)[:, None]
            r0 = min(self.rng.uniform(*self.cfg.twig_radius_mm), 0.6 * p.radius_mm[i])
            self.branches.append(
                VesselBranch(f"septal{k}", unit, _taper(n, r0, min(self.distal(), r0)), parent, i)
            )

    def murray_step_down(self) -> None:
        """Each parent narrows after a child leaves, by Murray's law r_p^3 = r_after^3 + r_c^3."""
        for child in self.branches:
            if child.parent < 0:
                continue
            p = self.branches[child.parent]
            i = child.parent_index
            ratio = np.clip(child.radius_mm[0] / max(p.radius_mm[i], 1e-6), 0.0, 0.95)
            p.radius_mm[i:] *= max((1.0 - ratio**3) ** (1.0 / 3.0), 0.85)

    def finish(self, side: str, semi_axes: np.ndarray, route) -> CoronaryTree:
        self.murray_step_down()
        min_r = self.cfg.distal_radius_mm[0] * 0.8
        for b in self.branches:
            b.radius_mm = np.maximum(b.radius_mm, min_r)
        return CoronaryTree(side, self.branches, semi_axes, route).finalise()


def _sample_counts(lo_hi: Tuple[int, int], rng: np.random.Generator) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def build_left_tree(rng: np.random.Generator, cfg: SynthConfig, semi_axes: np.ndarray) -> CoronaryTree:
    t = _TreeBuilder(rng, cfg)
    v_av = rng.uniform(0.27, 0.35) * PI
    phi_lm = rng.uniform(-0.4, -0.2) * PI
    r_main = rng.uniform(*cfg.main_radius_mm)
    ostium = np.array([phi_lm - 0.04 * PI, v_av - 0.1 * PI, 0.15])
    bifurcation = np.array([phi_lm, v_av, 0.03])
    lm_param = _smooth_polyline(np.stack([ostium, (ostium + bifurcation) / 2 + [0, 0.03, -0.05], bifurcation]), 40, 0.1)
    lm = t.add("left_main", lm_param, _taper(40, 1.15 * r_main, 1.1 * r_main))

    v_apex = rng.uniform(0.82, 0.97) * PI
    lad_ctrl = [bifurcation, [rng.uniform(-0.1, 0.0) * PI, v_av + 0.12 * PI, 0.02], [rng.uniform(-0.05, 0.1) * PI, v_apex, 0.02]]
    lad = t.add("lad", surface_curve(rng, lad_ctrl, 400, 0.05, t.tortuosity), _taper(400, r_main, t.distal()), lm, 39)
    lcx_len = rng.uniform(0.45, 0.85) * PI
    lcx_ctrl = [bifurcation, [phi_lm - 0.25 * PI, v_av + 0.02 * PI, 0.02], [phi_lm - lcx_len, v_av + rng.uniform(0.05, 0.2) * PI, 0.02]]
    r_cx = r_main * rng.uniform(0.8, 0.95)
    lcx = t.add("lcx", surface_curve(rng, lcx_ctrl, 320, 0.05, t.tortuosity), _taper(320, r_cx, t.distal()), lm, 39)
    for idx in (lad, lcx):
        t.add_stenosis(idx)

    mains = [lad, lcx]
    for k, f in enumerate(np.sort(rng.uniform(0.12, 0.6, _sample_counts(cfg.side_branches_per_main, rng)))):
        delta = (-rng.uniform(0.1, 0.4) * PI, rng.uniform(0.15, 0.4) * PI)
        r0 = rng.uniform(*cfg.side_branch_radius_mm) * (1 - 0.4 * f)
        mains.append(t.side_branch(lad, f, f"diagonal{k}", delta, r0, 200))
    for k, f in enumerate(np.sort(rng.uniform(0.2, 0.85, _sample_counts(cfg.side_branches_per_main, rng)))):
        delta = (rng.uniform(-0.2, 0.1) * PI, rng.uniform(0.2, 0.45) * PI)
        r0 = rng.uniform(*cfg.side_branch_radius_mm) * (1 - 0.3 * f)
        mains.append(t.side_branch(lcx, f, f"marginal{k}", delta, r0, 200))
    t.septals(lad)
    for idx in mains:
        t.twigs(idx)
    route_main = lad if rng.random() < 0.7 else lcx
    route = [(lm, 39), (route_main, int(rng.uniform(0.55, 0.95) * (len(t.branches[route_main].radius_mm) - 1)))]
    return t.finish("left", semi_axes, route)


def build_right_tree(rng: np.random.Generator, cfg: SynthConfig, semi_axes: np.ndarray) -> CoronaryTree:
    t = _TreeBuilder(rng, cfg)
    v_av = rng.uniform(0.27, 0.35) * PI
    r_main = rng.uniform(*cfg.main_radius_mm)
    phi_post = rng.uniform(0.85, 1.05) * PI
    ostium = np.array([0.3 * PI, v_av - 0.1 * PI, 0.15])
    ctrl = [ostium, [0.4 * PI, v_av - 0.02 * PI, 0.05], [0.6 * PI, v_av + 0.02 * PI, 0.02], [phi_post, v_av + 0.06 * PI, 0.02], [phi_post + 0.04 * PI, v_av + 0.14 * PI, 0.02]]
    rca = t.add("rca", surface_curve(rng, ctrl, 420, 0.05, t.tortuosity), _taper(420, r_main, 0.6 * r_main))
    t.add_stenosis(rca)
    mains = [rca]
    pda = t.side_branch(rca, 0.995, "pda", (0.02 * PI, rng.uniform(0.3, 0.5) * PI), 0.75 * r_main, 240)
    plv = t.side_branch(rca, 0.97, "plv", (rng.uniform(0.12, 0.25) * PI, rng.uniform(0.12, 0.25) * PI), 0.6 * r_main, 160)
    mains += [pda, plv]
    t.side_branch(rca, rng.uniform(0.03, 0.08), "conus", (-0.15 * PI, 0.08 * PI), 0.6, 60)
    for k, f in enumerate(np.sort(rng.uniform(0.2, 0.75, _sample_counts(cfg.side_branches_per_main, rng)))):
        delta = (rng.uniform(-0.05, 0.1) * PI, rng.uniform(0.25, 0.45) * PI)
        mains.append(t.side_branch(rca, f, f"rv_branch{k}", delta, rng.uniform(*cfg.side_branch_radius_mm) * 0.85, 180))
    for idx in mains:
        t.twigs(idx)
    route = [(rca, 419), (pda, int(rng.uniform(0.3, 0.9) * 239))] if rng.random() < 0.5 else [(rca, int(rng.uniform(0.6, 1.0) * 419))]
    return t.finish("right", semi_axes, route)


def generate_coronary_tree(rng: np.random.Generator, cfg: SynthConfig) -> CoronaryTree:
    semi_axes = np.array([rng.uniform(*r) for r in cfg.heart_semi_axes_mm])
    if rng.random() < cfg.left_dominance_probability:
        return build_left_tree(rng, cfg, semi_axes)
    return build_right_tree(rng, cfg, semi_axes)
