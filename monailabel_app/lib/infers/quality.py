"""CAS-IQA quality scores of a synthetic angiogram with the cas_iqa bundle."""

from __future__ import annotations

import os
from typing import Any, Dict

import torch
from monai.data import list_data_collate
from monailabel.interfaces.tasks.infer_v2 import InferType

from angiokit.data.quality_dataset import auxiliary_paths, prepare_quality_batch
from angiokit.engines.iqa_handlers import describe

from .bundle_infer import AngioBundleInfer

BATCH_KEYS = ("image", "fluoro", "reference", "fluoro_available", "reference_available")


class AuxiliaryImagesd:
    """The auxiliary images of a study by the naming rule (``<stem>_aux_fluoro.<ext>``,
    ``<stem>_aux_reference.<ext>`` beside it), unless the request names them."""

    def __call__(self, data):
        d = dict(data)
        if isinstance(d.get("image"), str) and os.path.isfile(d["image"]):
            for key, path in auxiliary_paths(d["image"]).items():
                d[key] = d.get(key) or path
        return d


class QualityInfer(AngioBundleInfer):
    """A classification-type task: the result is JSON, no label file::

        {"scores": {"guidewire": 3.41, "branch": ..., "artifact": ...},     # expected level, 1-5
         "levels": {...}, "probabilities": {metric: {"bad": p, ..., "excellent": p}},
         "auxiliary": {"fluoro": path, ...},                                 # the ones found
         "prediction": [{"idx": 0, "label": "guidewire", "score": 3.41}, ...]}
    """

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any], **kwargs):
        super().__init__(path, conf, overrides, type=InferType.CLASSIFICATION, add_post_restore=False, **kwargs)
        self.metrics = list(self.bundle_config.get_parsed_content("prompts"))

    def pre_transforms(self, data=None):
        # the bundle's own pipeline (inference.json "preprocessing"), so an override of one of its
        # transforms reaches the app too
        return [AuxiliaryImagesd()] + list(self.bundle_config.get_parsed_content("preprocessing", instantiate=True).transforms)

    def run_inferer(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        network = self._get_network(device, data)
        batch = list_data_collate([{k: data[k] for k in BATCH_KEYS}])
        image, _, _, kwargs = prepare_quality_batch(batch, torch.device(device))
        # BundleInferTask.inferer: the bundle's, averaged over orientations
        with torch.no_grad():
            data[self.output_label_key] = self.inferer(data)(image, network, **kwargs).cpu()  # [1, M, 5] level logits
        data["quality_batch"] = batch
        return data

    def post_transforms(self, data=None):
        return []

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        doc = describe(data[self.output_label_key], data["quality_batch"], self.metrics)[0]
        doc["prediction"] = [{"idx": i, "label": m, "score": doc["scores"][m]} for i, m in enumerate(self.metrics)]
        return None, doc
