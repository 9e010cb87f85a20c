"""Trainers, evaluators and ignite handlers."""

from .segmentation_handlers import ErrorOverlayWriter, SegmentationWriter
from .handlers import AlphaScheduleHandler, EncoderExportHandler, ReconstructionGridHandler, ReconstructionPNGWriter, checkpoint_objects
from .vasomim_trainer import SCALARS, VasoMIMEvaluator, VasoMIMTrainer, vasomim_forward

__all__ = [
    "AlphaScheduleHandler",
    "EncoderExportHandler",
    "ErrorOverlayWriter",
    "ReconstructionGridHandler",
    "ReconstructionPNGWriter",
    "SCALARS",
    "SegmentationWriter",
    "VasoMIMEvaluator",
    "VasoMIMTrainer",
    "checkpoint_objects",
    "vasomim_forward",
]
