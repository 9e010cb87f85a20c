"""``vessel_seg``: the xa_vessel_seg bundle as infer + train task, with MC-dropout scoring and
the ``epistemic`` / ``branch_uncertainty`` strategies.

--conf vessel_seg_checkpoint   a trained model.pt to serve and fine-tune (its network as recorded)
--conf vessel_seg_config       bundle overrides (JSON or file): what the first training trains,
                               training options, the sizes of a checkpoint that records none
--conf epistemic_passes        MC-dropout predictions per study (default 5)
--conf epistemic_dropout       dropout rate while scoring (default 0.2)
--conf epistemic_max_samples   studies scored per run (default 0: all unlabelled)
--conf vessel_seg_label_free   the label-free model to serve at the first start (default:
                               MODEL_DIR/vessel_seg_label_free.pt when it exists)

With no checkpoint the first start serves the label-free model: a ViT trained without a single
real label (synthetic frames alone, or the bundle's label_free recipe with the site's unlabelled
frames; docs/results.md, "Label-free", measures both). Without one it serves the classical Frangi
+ Otsu segmenter, which finds vessels with no training at all. Either way an annotator's first
"Run" gives a label worth correcting; the first ``/train/vessel_seg`` fine-tunes the label-free
ViT (or trains the configured ViT after the classical start), served from then on.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Tuple, Union

from monailabel.tasks.activelearning.epistemic import Epistemic

from angiokit.networks import VesselnessThresholdSegmenter, save_checkpoint

from ..bundles import BundleTaskConfig, bundle_version
from ..infers.vessel_seg import VesselSegInfer
from ..scoring import MCDropoutScoring
from ..trainers.vessel_seg import VesselSegTrain

# Frangi's scales (1-4 px) are in pixels of the usual 512 x 512 XA matrix (XCAD, ARCADE, clinical
# cines): the classical segmenter works at that size, as apps.classical measures it
CLASSICAL_IMAGE_SIZE = 512
LABEL_FREE_FILE = "vessel_seg_label_free.pt"
"""Where, in the app's model folder, the first start looks for the label-free model."""

logger = logging.getLogger(__name__)


class VesselSeg(BundleTaskConfig):
    BUNDLE = "xa_vessel_seg"

    def label_free_checkpoint(self) -> Optional[str]:
        """``--conf vessel_seg_label_free`` (an error when missing), else MODEL_DIR's default file
        if there is one."""
        given = self.conf.get(f"{self.name}_label_free")
        if given:
            if not os.path.isfile(given):
                raise FileNotFoundError(f"{given}: label-free checkpoint not found (--conf {self.name}_label_free)")
            return given
        default = os.path.join(self.model_dir, LABEL_FREE_FILE)
        return default if os.path.isfile(default) else None

    def first_start(self, path: str) -> Union[str, Tuple[str, str]]:
        checkpoint = self.label_free_checkpoint()
        if checkpoint:
            return "label_free", checkpoint  # prepare_weights copies it and records its sha256
        logger.warning(f"{self.name}: no label-free model ({os.path.join(self.model_dir, LABEL_FREE_FILE)} or --conf {self.name}_label_free); "
                       "the first start serves Frangi + Otsu. The label-free recipe: bundles/xa_vessel_seg/docs/README.md, 'Label-free'")
        classical = VesselnessThresholdSegmenter("frangi", threshold="otsu", out_channels=2)
        save_checkpoint(classical, path, bundle_version(self.bundle_path), image_size=CLASSICAL_IMAGE_SIZE, num_classes=2)
        return "classical"

    def infer(self):
        return {self.name: VesselSegInfer(self.bundle_path, self.conf, self.overrides)}

    def trainer(self):
        return VesselSegTrain(self.bundle_path, self.conf, self.overrides)

    def strategy(self):
        return {"epistemic": Epistemic(key="epistemic_entropy"), "branch_uncertainty": Epistemic(key="branch_entropy", desc="Frames whose thin vessels the segmenter is least sure of")}

    def scoring_method(self):
        task = VesselSegInfer(self.bundle_path, self.conf, self.overrides, dropout=float(self.conf.get("epistemic_dropout", 0.2)), train_mode=True, skip_writer=True)
        return {"epistemic": MCDropoutScoring(task, passes=int(self.conf.get("epistemic_passes", 5)), max_samples=int(self.conf.get("epistemic_max_samples", 0)))}
