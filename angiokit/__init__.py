"""angiokit: X-ray coronary angiography foundation models on MONAI."""

__version__ = "0.2.0"
