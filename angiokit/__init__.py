"""angiokit: X-ray coronary angiography foundation models on MONAI."""

__version__ = "0.1.0"
