"""Physically motivated synthetic X-ray coronary angiograms (see ``engine``)."""

from .config import SynthConfig, default_config
from .engine import AngiogramScene, SyntheticAngiogram, synthesize

__all__ = ["SynthConfig", "default_config", "AngiogramScene", "SyntheticAngiogram", "synthesize"]
