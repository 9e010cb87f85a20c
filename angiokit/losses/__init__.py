"""Losses: vessel segmentation (DiceCE + clDice), VasoMIM's anatomical consistency and CAS-IQA's
level cross-entropy + PLCC."""

from .consistency import anatomical_consistency_loss
from .iqa import IQALoss, plcc_loss
from .vessel_loss import VesselSegmentationLoss

__all__ = ["IQALoss", "VesselSegmentationLoss", "anatomical_consistency_loss", "plcc_loss"]
