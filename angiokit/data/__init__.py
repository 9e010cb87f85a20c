"""Angiogram data: synthetic engine, readers/writers, datalists."""

from .datalist import assign_splits, build_datalist, write_datalist
from .errors import AngioDataError
from .readers import Angiogram, load_frame, max_contrast_frame, read_angiogram, vessel_contrast_score
from .writers import to_uint, write_dicom_xa, write_mask_png, write_nifti, write_png

__all__ = [
    "AngioDataError",
    "Angiogram",
    "assign_splits",
    "build_datalist",
    "load_frame",
    "max_contrast_frame",
    "read_angiogram",
    "to_uint",
    "vessel_contrast_score",
    "write_datalist",
    "write_dicom_xa",
    "write_mask_png",
    "write_nifti",
    "write_png",
]
