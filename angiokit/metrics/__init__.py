"""Vessel segmentation metrics: Dice and clDice, per image and as MONAI metrics."""

from .correlation import CorrelationMetric
from .vessel_metrics import ClDiceMetric, VesselDiceMetric, cldice_score, dice_score

__all__ = ["ClDiceMetric", "CorrelationMetric", "VesselDiceMetric", "cldice_score", "dice_score"]
