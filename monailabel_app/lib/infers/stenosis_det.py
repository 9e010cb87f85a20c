"""Stenosis detection of frames and cines with the xa_stenosis_det bundle.

A detection-type task, as MONAI Label's detection bundles are: the result is JSON, no label file.
Studies are loaded as the viewers load them (ITK; a DICOM XA cine is [T, H, W]); the bundle's
``DetectorInferer`` (its network and anchors as the checkpoint records them) resizes each frame
to the network's size, detects, and scales the boxes back to the frame::

    {"box": [[x1, y1, x2, y2], ...], "label": [0, ...], "score": [0.93, ...],   # one frame's boxes
     "frame": 0,                       # the frame they are of: the one with the most confident box
     "frames": [{"frame": 0, "box": [...], "score": [...], "label": [...]}, ...],   # every frame
     "frame_size": {"width": W, "height": H}, "box_mode": BOX_MODE,
     "label_names": {"stenosis": 0}, "network": ..., "model": {...provenance...}, "latencies": ...}

Boxes are in pixels of the input frame, x = column, y = row (as the box datalists and the
bundle's JSON files have them), most confident first. ``min_score`` (request parameter, default
0: every box of the detector, whose own score threshold is 0.02) drops the less confident ones.

With no trained detector (no ``--conf stenosis_det_checkpoint`` yet) the model is still listed
and every request answers HTTP 503 with ``NO_DETECTOR``.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from fastapi import HTTPException
from monai.data import ITKReader
from monai.transforms import LoadImaged
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.transform.pre import LoadImageTensord

from angiokit.data.pretrain import LoadAngiogramd
from angiokit.engines.detection import BOX_MODE, to_records

from ..transforms import ITKFramesd
from ..weights import provenance
from .bundle_infer import AngioBundleInfer

NO_DETECTOR = (
    "no trained stenosis detector yet: start the server with --conf stenosis_det_checkpoint PATH "
    "(a models/model.pt the xa_stenosis_det bundle trained; the app does not train detectors)"
)


def no_detector_yet() -> HTTPException:
    """What ``/infer/stenosis_det`` answers while the app has no detector to serve."""
    return HTTPException(status_code=503, detail=NO_DETECTOR)


def label_map(label_names: Dict[Any, str]) -> Dict[str, int]:
    """``{"0": "stenosis"}`` (the checkpoint's) -> ``{"stenosis": 0}`` (MONAI Label's ``labels``)."""
    return {name: int(index) for index, name in label_names.items()}


class StenosisDetInfer(AngioBundleInfer):
    """The bundle's network, intensity scaling and ``DetectorInferer`` (cine=True, frame by frame)."""

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any], **kwargs):
        super().__init__(path, conf, overrides, type=InferType.DETECTION, pre_filter=[LoadAngiogramd], add_post_restore=False, **kwargs)
        self.labels = label_map(self._label_names())  # the checkpoint's classes (a retrained detector may have others than the metadata)
        self._config["min_score"] = 0.0

    def _label_names(self) -> Dict[str, str]:
        return {str(k): v for k, v in self.bundle_config.get_parsed_content("label_names").items()}

    def __call__(self, request, callbacks=None):
        label, result = super().__call__(request, callbacks)  # rebuilds the network when the checkpoint changes
        self.labels = label_map(self._label_names())
        if isinstance(result, dict) and "box" in result:
            result["label_names"] = self.labels
        return label, result

    def pre_transforms(self, data=None):
        load = LoadImaged("image", reader=ITKReader(), image_only=False)
        return [LoadImageTensord("image", load_image_d=load), ITKFramesd("image")] + list(super().pre_transforms(data))

    def run_detector(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        # the bundle's DetectorInferer: one study = one input of T frames -> T predictions, boxes
        # (array-axis order) in the frame's pixels
        network = self._get_network(device, data)
        frames = torch.as_tensor(data[self.input_key]).as_subclass(torch.Tensor).float()  # [T, H, W]
        predictions = self.inferer(data)(frames[None].to(torch.device(device)), network)[0]
        if isinstance(predictions, dict):  # an inferer configured without cine=True
            predictions = [predictions]
        data["detections"] = [{k: v.detach().cpu() for k, v in p.items()} for p in predictions]
        data["frame_size"] = {"width": int(frames.shape[-1]), "height": int(frames.shape[-2])}
        return data

    def post_transforms(self, data=None):
        return []

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        label_names = self._label_names()
        min_score = float(data.get("min_score") or 0.0)
        frames = []
        for i, p in enumerate(data["detections"]):
            order = torch.argsort(p["scores"], descending=True, stable=True)
            keep = order[p["scores"][order] >= min_score]
            records = to_records({k: v[keep] for k, v in p.items()}, label_names)
            frames.append({"frame": i, "box": records["boxes"], "score": records["scores"], "label": records["labels"]})
        best = max(range(len(frames)), key=lambda i: max(frames[i]["score"], default=-1.0))  # first of equals; frame 0 when none
        doc = {
            "box": frames[best]["box"],
            "label": frames[best]["label"],
            "score": frames[best]["score"],
            "frame": best,
            "frames": frames,
            "frame_size": data["frame_size"],
            "box_mode": BOX_MODE,
        }
        return None, doc


class NoTrainedDetector(InferTask):
    """``stenosis_det`` before it has a detector: listed in ``/info`` (as a detection model that
    says what it lacks), every request an HTTP 503 naming the option that gives it one."""

    def __init__(self, bundle_path: str, label_names: Dict[str, str]):
        super().__init__(type=InferType.DETECTION, labels=label_map(label_names), dimension=2, description=f"Not serving: {NO_DETECTOR}")
        self.bundle_path = bundle_path

    def is_valid(self) -> bool:
        return True

    def info(self) -> Dict[str, Any]:
        i = super().info()
        i["provenance"] = provenance(self.bundle_path)
        i["serving"] = "no trained stenosis detector (give --conf stenosis_det_checkpoint)"
        i["provenance"]["serving"] = i["serving"]
        return i

    def __call__(self, request, callbacks=None):
        raise no_detector_yet()
