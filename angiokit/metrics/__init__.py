"""Vessel segmentation metrics: Dice and clDice, and the ARCADE stenosis F1, per image and as MONAI metrics;
stenosis detection metrics (COCO AP, FROC recall, bootstrap intervals)."""

from .correlation import CorrelationMetric
from .detection import DetectionAPMetric, bootstrap_detection, detection_metrics, paired_detection_difference, plot_pr_curves
from .paired import paired_difference
from .stenosis_f1 import StenosisF1Metric, stenosis_f1_score, with_saved_metrics
from .vessel_metrics import ClDiceMetric, VesselDiceMetric, cldice_score, dice_score

__all__ = ["ClDiceMetric", "CorrelationMetric", "DetectionAPMetric", "StenosisF1Metric", "VesselDiceMetric", "bootstrap_detection", "cldice_score", "detection_metrics", "dice_score", "paired_detection_difference", "paired_difference", "plot_pr_curves", "stenosis_f1_score", "with_saved_metrics"]
