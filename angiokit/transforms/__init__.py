"""MONAI-style transforms for angiograms: vesselness prior, the official binary prior, coarse
vessel mask, the random resized crop of pre-training; label-free domain adaptation (synthetic
vessels on real backgrounds, Fourier style) and the intensity-order / local-contrast inputs."""

from .binary_prior import binary_prior_from_vesselness, binary_vessel_prior, grow_from_maximum
from .coarse_mask import coarse_vessel_mask
from .crop import RandResizedCropd
from .domain import CompositeOnRealBackgroundd, RandFourierStyled, RealFramePool, fourier_style, remove_vessels
from .intensity_order import InputTransform, local_contrast, local_intensity_order
from .prior_transforms import CoarseVesselMask, CoarseVesselMaskd, VesselnessPrior, VesselnessPriord
from .vesselness import gaussian_blur, vesselness

__all__ = [
    "CompositeOnRealBackgroundd",
    "InputTransform",
    "RandFourierStyled",
    "RealFramePool",
    "fourier_style",
    "local_contrast",
    "local_intensity_order",
    "remove_vessels",
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
