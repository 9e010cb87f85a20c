"""Dataset adapters: public data sets as their owners distribute them -> images/labels + datalist."""

from .arcade import load_coco, prepare_arcade, prepare_arcade_s, rasterize_annotations
from .boxes import BOX_MODE, arcade_s_split, check_boxes, prepare_arcade_s_boxes, prepare_boxes, read_coco_boxes, read_csv_boxes, read_voc_boxes
from .common import binary_mask, load_split, with_validation_holdout
from .dicom_frames import prepare_dicom_frames
from .folders import prepare_dca1, prepare_pairs

__all__ = [
    "BOX_MODE", "arcade_s_split", "binary_mask", "check_boxes", "load_coco", "load_split", "prepare_arcade", "prepare_arcade_s", "prepare_arcade_s_boxes", "prepare_boxes",
    "prepare_dca1", "prepare_dicom_frames", "prepare_pairs", "rasterize_annotations", "read_coco_boxes", "read_csv_boxes", "read_voc_boxes", "with_validation_holdout",
]
