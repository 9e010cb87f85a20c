"""Vessel segmentation of frames and cines with the xa_vessel_seg bundle."""

from __future__ import annotations

import os
from typing import Any, Dict

from monai.data import ITKReader
from monai.transforms import LoadImaged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.transform.pre import LoadImageTensord

from angiokit.data.pretrain import LoadAngiogramd

from ..transforms import FramesToITKd, ITKFramesd
from .bundle_infer import AngioBundleInfer


class VesselSegInfer(AngioBundleInfer):
    """The bundle's network, scaling, inferer and softmax; studies loaded as the viewers load
    them (ITK) and every frame of a cine segmented, the label returned in the study's layout.

    The result is a PNG for a PNG / JPEG frame, NIfTI for a DICOM cine (a request can ask for
    another ``result_extension``, e.g. ``.nrrd`` as OHIF does). A request with
    ``probabilities: true`` (and ``skip_writer``) returns the [T, C, H, W] class probabilities.
    """

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any], **kwargs):
        super().__init__(path, conf, overrides, type=InferType.SEGMENTATION, pre_filter=[LoadAngiogramd], add_post_restore=False, **kwargs)

    def pre_transforms(self, data=None):
        load = LoadImaged("image", reader=ITKReader(), image_only=False)
        return [LoadImageTensord("image", load_image_d=load), ITKFramesd("image")] + list(super().pre_transforms(data))

    def run_inferer(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        # one study is one batch of its T frames: [1, T, H, W] -> CineInferer -> [T, C, H, W]
        frames = data[self.input_key]
        data[self.input_key] = frames[None]
        data = super().run_inferer(data, convert_to_batch=False, device=device)
        data[self.input_key] = frames
        return data

    def post_transforms(self, data=None):
        return list(super().post_transforms(data)) + [FramesToITKd(self.output_label_key)]

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        path = str(data.get("image_path") or "")
        if not data.get("result_extension") and (os.path.isdir(path) or path.lower().endswith(".dcm")):
            extension = ".nii.gz"  # not a DICOM written by ITK: a label the viewers load
        return super().writer(data, extension=extension, dtype=dtype)
