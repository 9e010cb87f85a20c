"""MONAI-style transforms for angiograms: vesselness prior, the official binary prior, coarse
vessel mask, the random resized crop of pre-training; the intensity-order / local-contrast
inputs (the label-free domain-adaptation transforms, which read real frames, are in
``angiokit.data.domain``)."""

from .binary_prior import binary_prior_from_vesselness, binary_vessel_prior, grow_from_maximum
from .coarse_mask import coarse_vessel_mask
from .crop import RandResizedCropd
from .intensity_order import InputTransform, local_contrast, local_intensity_order
from .prior_transforms import CoarseVesselMask, CoarseVesselMaskd, VesselnessPrior, VesselnessPriord
from .vesselness import gaussian_blur, vesselness

__all__ = [
    "InputTransform",
    "local_contrast",
    "local_intensity_order",
    "RandResizedCropd",
    "binary_prior_from_vesselness",
    "binary_vessel_prior",
    "grow_from_maximum",
    "CoarseVesselMask",
    "CoarseVesselMaskd",
    "VesselnessPrior",
    "VesselnessPriord",
    "coarse_vessel_mask",
    "gaussian_blur",
    "vesselness",
]
