"""Trainers, evaluators and ignite handlers."""

from .detection import DetectionLoss, DetectionPrepareBatch, DetectionReport, DetectionWriter, DetectorInferer
from .iqa_handlers import IQAJsonWriter, IQAReportWriter
from .segmentation_handlers import ErrorOverlayWriter, SegmentationWriter, batch_one_hot
from .handlers import AlphaScheduleHandler, EncoderExportHandler, ReconstructionGridHandler, ReconstructionPNGWriter, checkpoint_objects
from .training_handlers import ValidateEveryAndLast, WeightsReport
from .reconstruction_metrics import ReconstructionMetricsWriter, masked_patch_errors
from .cuda_options import configure_cuda
from .vasomim_step import VasoMIMObjective, compile_network, train_step
from .vasomim_trainer import SCALARS, VasoMIMEvaluator, VasoMIMTrainer

__all__ = [
    "AlphaScheduleHandler",
    "DetectionLoss",
    "DetectionPrepareBatch",
    "DetectionReport",
    "DetectionWriter",
    "DetectorInferer",
    "EncoderExportHandler",
    "ErrorOverlayWriter",
    "IQAJsonWriter",
    "IQAReportWriter",
    "ReconstructionGridHandler",
    "ReconstructionMetricsWriter",
    "ReconstructionPNGWriter",
    "SCALARS",
    "SegmentationWriter",
    "VasoMIMEvaluator",
    "VasoMIMObjective",
    "batch_one_hot",
    "compile_network",
    "configure_cuda",
    "VasoMIMTrainer",
    "ValidateEveryAndLast",
    "WeightsReport",
    "checkpoint_objects",
    "masked_patch_errors",
    "train_step",
]
