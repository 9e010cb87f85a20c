"""MONAI-style transforms for angiograms: vesselness prior and coarse vessel mask."""

from .coarse_mask import coarse_vessel_mask
from .prior_transforms import CoarseVesselMask, CoarseVesselMaskd, VesselnessPrior, VesselnessPriord
from .vesselness import gaussian_blur, vesselness

__all__ = [
    "CoarseVesselMask",
    "CoarseVesselMaskd",
    "VesselnessPrior",
    "VesselnessPriord",
    "coarse_vessel_mask",
    "gaussian_blur",
    "vesselness",
]
