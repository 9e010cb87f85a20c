"""``vessel_seg``: the xa_vessel_seg bundle as infer + train task, with MC-dropout scoring and
the ``epistemic`` / ``branch_uncertainty`` strategies.

--conf vessel_seg_config       bundle overrides (JSON or file), e.g. the sizes it was trained at
--conf vessel_seg_checkpoint   a trained model.pt to start from (when the working copy has none)
--conf epistemic_passes        MC-dropout predictions per study (default 5)
--conf epistemic_dropout       dropout rate while scoring (default 0.2)
--conf epistemic_max_samples   studies scored per run (default 0: all unlabelled)
"""

from __future__ import annotations

from monailabel.tasks.activelearning.epistemic import Epistemic

from ..bundles import BundleTaskConfig
from ..infers.vessel_seg import VesselSegInfer
from ..scoring import MCDropoutScoring
from ..trainers.vessel_seg import VesselSegTrain


class VesselSeg(BundleTaskConfig):
    BUNDLE = "xa_vessel_seg"

    def infer(self):
        return {self.name: VesselSegInfer(self.bundle_path, self.conf, self.overrides)}

    def trainer(self):
        return VesselSegTrain(self.bundle_path, self.conf, self.overrides)

    def strategy(self):
        return {"epistemic": Epistemic(key="epistemic_entropy"), "branch_uncertainty": Epistemic(key="branch_entropy", desc="Frames whose thin vessels the segmenter is least sure of")}

    def scoring_method(self):
        task = VesselSegInfer(self.bundle_path, self.conf, self.overrides, dropout=float(self.conf.get("epistemic_dropout", 0.2)), train_mode=True, skip_writer=True)
        return {"epistemic": MCDropoutScoring(task, passes=int(self.conf.get("epistemic_passes", 5)), max_samples=int(self.conf.get("epistemic_max_samples", 0)))}
