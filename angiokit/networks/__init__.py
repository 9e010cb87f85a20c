"""Networks: VasoMIM, segmenters, CAS-IQA scorer (coming), and the classical baseline."""

from .classical import VesselnessThresholdSegmenter

__all__ = ["VesselnessThresholdSegmenter"]
