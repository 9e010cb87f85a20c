"""``vessel_seg``: the xa_vessel_seg bundle as infer + train task, with MC-dropout scoring and
the ``epistemic`` / ``branch_uncertainty`` strategies.

--conf vessel_seg_checkpoint   a trained model.pt to serve and fine-tune (its network as recorded)
--conf vessel_seg_config       bundle overrides (JSON or file): what the first training trains,
                               training options, the sizes of a checkpoint that records none
--conf epistemic_passes        MC-dropout predictions per study (default 5)
--conf epistemic_dropout       dropout rate while scoring (default 0.2)
--conf epistemic_max_samples   studies scored per run (default 0: all unlabelled)

With no checkpoint the first start serves the classical Frangi + Otsu segmenter, which finds
vessels with no training (an annotator's first "Run" gives a label worth correcting); the first
``/train/vessel_seg`` trains the configured ViT, which is served from then on.
"""

from __future__ import annotations

from monailabel.tasks.activelearning.epistemic import Epistemic

from angiokit.networks import VesselnessThresholdSegmenter, save_checkpoint

from ..bundles import BundleTaskConfig, bundle_version
from ..infers.vessel_seg import VesselSegInfer
from ..scoring import MCDropoutScoring
from ..trainers.vessel_seg import VesselSegTrain

# Frangi's scales (1-4 px) are in pixels of the usual 512 x 512 XA matrix (XCAD, ARCADE, clinical
# cines): the classical segmenter works at that size, as apps.classical measures it
CLASSICAL_IMAGE_SIZE = 512


class VesselSeg(BundleTaskConfig):
    BUNDLE = "xa_vessel_seg"

    def first_start(self, path: str) -> str:
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
