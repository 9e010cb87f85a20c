"""``stenosis_det``: the xa_stenosis_det bundle as a detection-type infer task (boxes of coronary
stenoses in frames and cines, as JSON).

--conf stenosis_det_checkpoint   a trained model.pt to serve (its network, input size, anchors and
                                 label names as recorded)
--conf stenosis_det_config       bundle overrides of inference.json (JSON or file), e.g. the
                                 detector's own thresholds: {"detector": "$angiokit.networks.
                                 build_detector(@network, base_anchor_shapes=@anchor_shapes,
                                 score_thresh=0.1)"}

There is no classical detector and no untrained one worth serving: with no checkpoint (and none
kept in the working copy from an earlier start) the model is listed in ``/info`` as serving "no
trained stenosis detector", and ``/infer/stenosis_det`` answers HTTP 503 naming
``--conf stenosis_det_checkpoint``. ``--conf models all`` includes the model only once it has a
detector (the option given, or weights kept in the working copy); name it in ``--conf models``
to list it without one.

No trainer, strategy or scoring: the bundle trains from box datalists (``apps.prepare
arcade_s_boxes`` / ``coco_boxes`` / ``voc_boxes`` / ``csv_boxes``), which the datastore does not hold;
train it with the bundle and serve its model.pt.
"""

from __future__ import annotations

import logging
import os
from typing import Dict

from monailabel.interfaces.config import TaskConfig

from ..bundles import BundleTaskConfig, bundle_overrides, working_bundle
from ..infers.stenosis_det import NO_DETECTOR, NoTrainedDetector, StenosisDetInfer
from ..weights import weights_path

logger = logging.getLogger(__name__)

DEFAULT_LABEL_NAMES = {"0": "stenosis"}


def has_detector(model_dir: str, name: str, conf: Dict[str, str]) -> bool:
    """Whether a start would serve a detector: a checkpoint given, or weights kept in the working
    copy ``model_dir/<name>`` from an earlier start."""
    return bool((conf or {}).get(f"{name}_checkpoint")) or os.path.isfile(weights_path(os.path.join(model_dir, name)))


class StenosisDet(BundleTaskConfig):
    BUNDLE = "xa_stenosis_det"
    NOT_SERVING = NO_DETECTOR

    def init(self, name, model_dir, conf, planner, **kwargs):
        self.serving = has_detector(model_dir, name, conf)
        if self.serving:  # the checkpoint's weights into the working copy, checked to fit
            super().init(name, model_dir, conf, planner, **kwargs)
            return
        TaskConfig.init(self, name, model_dir, conf, planner, **kwargs)
        self.overrides = bundle_overrides(conf, name)
        self.bundle_path = working_bundle(model_dir, self.BUNDLE, name)
        logger.warning(f"{name}: {NO_DETECTOR}; /infer/{name} answers 503 until then")

    def first_start(self, path: str) -> str:  # never reached: init serves only a given or kept detector
        raise RuntimeError(NO_DETECTOR)

    def infer(self):
        if not self.serving:
            return {self.name: NoTrainedDetector(self.bundle_path, DEFAULT_LABEL_NAMES)}
        return {self.name: StenosisDetInfer(self.bundle_path, self.conf, self.overrides)}

    def trainer(self):
        return None

    def strategy(self):
        return {}

    def scoring_method(self):
        return {}
