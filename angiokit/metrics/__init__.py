"""Vessel segmentation metrics: Dice and clDice, per image and as MONAI metrics."""

from .vessel_metrics import ClDiceMetric, VesselDiceMetric, cldice_score, dice_score

__all__ = ["ClDiceMetric", "VesselDiceMetric", "cldice_score", "dice_score"]
