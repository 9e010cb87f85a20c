"""Trainers, evaluators and ignite handlers."""

from .iqa_handlers import IQAJsonWriter, IQAReportWriter
from .segmentation_handlers import ErrorOverlayWriter, SegmentationWriter
from .handlers import AlphaScheduleHandler, EncoderExportHandler, ReconstructionGridHandler, ReconstructionPNGWriter, checkpoint_objects
from .vasomim_trainer import SCALARS, VasoMIMEvaluator, VasoMIMTrainer, vasomim_forward

__all__ = [
    "AlphaScheduleHandler",
    "EncoderExportHandler",
    "ErrorOverlayWriter",
    "IQAJsonWriter",
    "IQAReportWriter",
    "ReconstructionGridHandler",
    "ReconstructionPNGWriter",
    "SCALARS",
    "SegmentationWriter",
    "VasoMIMEvaluator",
    "VasoMIMTrainer",
    "checkpoint_objects",
    "vasomim_forward",
]
