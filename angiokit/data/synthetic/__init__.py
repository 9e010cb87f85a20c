"""Physically motivated synthetic X-ray coronary angiograms (see ``engine``)."""

from .config import PRESETS, REAL_MATCHED, SynthConfig, default_config
from .engine import AngiogramScene, SyntheticAngiogram, synthesize

__all__ = ["PRESETS", "REAL_MATCHED", "SynthConfig", "default_config", "AngiogramScene", "SyntheticAngiogram", "synthesize"]
