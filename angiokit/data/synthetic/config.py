"""Every parameter of the synthetic angiogram engine, in one dataclass.

A pair ``(low, high)`` means "drawn uniformly per image (per cine) from this range", so one
config describes a distribution of angiograms, not a single picture. Set ``low == high`` to fix
a value. Lengths are in millimetres unless the name says ``_px``.

Attenuation values are *effective* line integrals after the X-ray system's harmonisation
(the dynamic-range compression every XA system applies before display), not raw water/iodine
coefficients: raw thorax attenuation would drown the vessels, which is not what a displayed
angiogram shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Tuple

Range = Tuple[float, float]


@dataclass
class SynthConfig:
    # ---- image geometry -------------------------------------------------------------------
    size: int = 512
    """Output frames are ``size x size`` pixels."""
    field_of_view_mm: float = 130.0
    """Width of the image at the heart (isocentre); pixel spacing = field_of_view_mm / size
    (0.25 mm at 512 px: a 7-inch detector field at a magnification of about 1.4)."""
    frames: int = 1
    """Frames per sample; > 1 makes a cine run with contrast wash-in / wash-out and motion."""
    frame_time_ms: float = 66.7
    """Time between cine frames (15 frames/s)."""

    # ---- coronary anatomy ----------------------------------------------------------------
    left_dominance_probability: float = 0.65
    """Probability that a sample shows the left coronary tree (else the right one)."""
    heart_semi_axes_mm: Tuple[Range, Range, Range] = ((44.0, 54.0), (40.0, 50.0), (55.0, 68.0))
    """Ellipsoid the vessels run on (two short axes, then the base-apex long axis)."""
    main_radius_mm: Range = (1.5, 2.2)
    """Proximal radius of the main vessels (LAD, LCx, RCA); left main gets 1.15x."""
    distal_radius_mm: Range = (0.45, 0.7)
    """Radius at the distal end of every branch."""
    side_branch_radius_mm: Range = (0.8, 1.3)
    """Proximal radius of side branches (diagonals, marginals, PDA)."""
    twig_radius_mm: Range = (0.5, 0.75)
    """Proximal radius of the small third-generation branches."""
    side_branches_per_main: Tuple[int, int] = (2, 4)
    twigs_per_branch: Tuple[int, int] = (1, 4)
    septal_branches: Tuple[int, int] = (2, 5)
    tortuosity: Range = (0.6, 1.4)
    """Scales the fine wiggle of the centrelines (0 = smooth arcs)."""
    stenosis_probability: float = 0.3
    """Chance that a main vessel has one focal narrowing."""
    stenosis_severity: Range = (0.3, 0.7)
    """Fractional radius reduction at the narrowest point."""

    # ---- view -----------------------------------------------------------------------------
    lao_rao_deg: Range = (-45.0, 55.0)
    cranial_caudal_deg: Range = (-30.0, 30.0)
    in_plane_rotation_deg: Range = (-12.0, 12.0)
    zoom: Range = (0.95, 1.25)
    centre_jitter: float = 0.08
    """Random shift of the heart centre, as a fraction of the field of view."""

    # ---- devices --------------------------------------------------------------------------
    catheter_radius_mm: float = 1.0
    """6 French guiding catheter."""
    guidewire_probability: float = 0.5
    """Chance that a sample shows an interventional guidewire (PCI) in a main vessel."""
    guidewire_radius_mm: float = 0.18
    """0.014-inch coronary guidewire."""
    guidewire_tip_mm: float = 30.0
    """Length of the more radiopaque distal tip."""

    # ---- attenuation (effective line integrals, see module doc) -----------------------------
    iodine_attenuation_per_mm: Range = (0.06, 0.12)
    """Fully opacified vessel: line integral per mm of projected lumen."""
    guidewire_attenuation_per_mm: Range = (0.5, 0.8)
    guidewire_tip_factor: float = 2.0
    catheter_wall_attenuation_per_mm: float = 0.06
    heart_shadow: Range = (0.2, 0.4)
    soft_tissue_texture: Range = (0.08, 0.18)
    fine_texture: Range = (0.015, 0.035)
    spine_probability: float = 0.7
    spine_attenuation: Range = (0.08, 0.2)
    rib_count: Tuple[int, int] = (3, 7)
    rib_attenuation: Range = (0.02, 0.05)
    diaphragm_probability: float = 0.7
    diaphragm_attenuation: Range = (0.2, 0.45)
    collimator_probability: float = 0.4
    collimator_attenuation: Range = (0.6, 1.2)
    circular_field_probability: float = 0.0
    """Chance of an image intensifier's round field: black outside a disc (DCA1 shows one in 59 %
    of its frames); vessels outside it are not in the masks. 0 draws nothing, so the other
    parameters' frames stay as they were."""
    circular_field_radius: Range = (0.55, 0.68)
    """Radius of that disc, as a fraction of the frame side (0.5 touches the edges' middles)."""
    vignetting: Range = (0.15, 0.45)
    """Relative intensity loss at the image corners (image-intensifier falloff)."""

    # ---- detector -------------------------------------------------------------------------
    photons_per_pixel: Range = (1200.0, 4000.0)
    """Mean unattenuated quanta per pixel at 512 px (scaled with pixel area at other sizes);
    sets the quantum (Poisson) noise."""
    electronic_noise: Range = (2.0, 6.0)
    """Standard deviation of the additive detector noise, in quanta."""
    focal_spot_blur_px: Range = (0.5, 0.9)
    """Gaussian sigma of the focal-spot / geometric unsharpness (before noise)."""
    detector_blur_px: Range = (0.5, 0.8)
    """Gaussian sigma of the scintillator spread (after noise: correlates the noise)."""
    edge_enhancement: Range = (0.0, 0.6)
    """Unsharp-mask gain of the system's display processing."""
    display_gamma: Range = (0.85, 1.2)
    display_white: Range = (0.6, 0.88)
    """Displayed brightness of the most transparent background (before vessels)."""
    display_span: Range = (0.5, 0.8)
    """Displayed range taken by the vessel-free background (its 0.5-99.5 percentiles)."""

    # ---- cine -----------------------------------------------------------------------------
    heart_rate_bpm: Range = (55.0, 95.0)
    contraction: Range = (0.08, 0.16)
    """Fractional shortening of the ellipsoid axes at end-systole."""
    contrast_arrival_fraction: Range = (0.1, 0.3)
    """When the injection starts, as a fraction of the cine length."""
    contrast_washout_fraction: Range = (0.65, 0.85)
    """When wash-out starts, as a fraction of the cine length."""
    contrast_front_speed_mm_per_s: Range = (250.0, 500.0)
    washout_time_s: Range = (0.4, 1.0)
    mask_contrast_threshold: float = 0.25
    """A vessel pixel is in the per-frame vessel mask when its contrast fill is at least this."""

    def __post_init__(self) -> None:
        if int(self.size) < 32:
            raise ValueError(f"SynthConfig.size must be >= 32 pixels, got {self.size}")
        if int(self.frames) < 1:
            raise ValueError(f"SynthConfig.frames must be >= 1, got {self.frames}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                if value[0] > value[1]:
                    raise ValueError(f"SynthConfig.{f.name} range is (low, high), got {tuple(value)}")

    @property
    def pixel_spacing_mm(self) -> float:
        return self.field_of_view_mm / self.size

    def to_dict(self) -> dict:
        return asdict(self)


REAL_MATCHED = {
    # fitted only to frames a label-free run may see (``apps.synth_gap --preset real_matched
    # --tuning_only``: DCA1's training frames, ARCADE stenosis train, Kragujevac; no test frame):
    # wider vessels (real runs are zoomed onto the tree), lower and less varied vessel contrast,
    # far less noise (displayed frames are recursively filtered over time, so their noise is below
    # one frame's quanta), DCA1's round field of view. docs/synthetic_vs_real_tuning/ has the fit.
    "zoom": (1.3, 1.8),
    "photons_per_pixel": (30000.0, 100000.0),
    "iodine_attenuation_per_mm": (0.045, 0.065),
    "circular_field_probability": 0.5,
}
"""``default_config(**REAL_MATCHED)``: the engine fitted to the measured gap (``apps.synth_gap
--preset real_matched --tuning_only``), the label-free recipe's synthetic frames."""
PRESETS = {"default": {}, "real_matched": REAL_MATCHED}


def default_config(**overrides) -> SynthConfig:
    """``SynthConfig`` with keyword overrides; unknown names are an error, not ignored."""
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown SynthConfig parameter(s): {unknown}; known: {sorted(known)}")
    return SynthConfig(**overrides)


__all__ = ["PRESETS", "REAL_MATCHED", "SynthConfig", "default_config"]
