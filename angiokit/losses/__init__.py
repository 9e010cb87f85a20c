"""Losses for vessel segmentation."""

from .vessel_loss import VesselSegmentationLoss

__all__ = ["VesselSegmentationLoss"]
