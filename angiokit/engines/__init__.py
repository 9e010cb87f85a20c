"""Trainers, evaluators and ignite handlers."""

from .handlers import AlphaScheduleHandler, EncoderExportHandler, ReconstructionGridHandler, ReconstructionPNGWriter, checkpoint_objects
from .vasomim_trainer import SCALARS, VasoMIMEvaluator, VasoMIMTrainer, vasomim_forward

__all__ = [
    "AlphaScheduleHandler",
    "EncoderExportHandler",
    "ReconstructionGridHandler",
    "ReconstructionPNGWriter",
    "SCALARS",
    "VasoMIMEvaluator",
    "VasoMIMTrainer",
    "checkpoint_objects",
    "vasomim_forward",
]
