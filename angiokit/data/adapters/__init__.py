"""Dataset adapters: public data sets as their owners distribute them -> images/labels + datalist."""

from .arcade import load_coco, prepare_arcade, prepare_arcade_s, rasterize_annotations
from .common import binary_mask, load_split, with_validation_holdout
from .dicom_frames import prepare_dicom_frames
from .folders import prepare_dca1, prepare_pairs

__all__ = ["binary_mask", "load_coco", "load_split", "prepare_arcade", "prepare_arcade_s", "prepare_dca1", "prepare_dicom_frames", "prepare_pairs", "rasterize_annotations", "with_validation_holdout"]
