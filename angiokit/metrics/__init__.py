"""Vessel segmentation metrics: Dice and clDice, and the ARCADE stenosis F1, per image and as MONAI metrics."""

from .correlation import CorrelationMetric
from .paired import paired_difference
from .stenosis_f1 import StenosisF1Metric, stenosis_f1_score, with_saved_metrics
from .vessel_metrics import ClDiceMetric, VesselDiceMetric, cldice_score, dice_score

__all__ = ["ClDiceMetric", "CorrelationMetric", "StenosisF1Metric", "VesselDiceMetric", "cldice_score", "dice_score", "paired_difference", "stenosis_f1_score", "with_saved_metrics"]
