"""``quality``: the cas_iqa bundle as a classification-type infer task and a train task on the
annotators' ratings, with its scoring and the ``quality_lowest`` / ``quality_uncertain``
strategies.

--conf quality_checkpoint   a trained model.pt to serve and fine-tune (its network as recorded)
--conf quality_config       bundle overrides (JSON or file): what an untrained start builds,
                            training options, the sizes of a checkpoint that records none

With no checkpoint the scorer starts untrained (the configured network, its pre-trained encoder
if one is configured) and ``/info`` says so.
"""

from __future__ import annotations

from ..bundles import BundleTaskConfig
from ..infers.quality import QualityInfer
from ..scoring import QualityScoring
from ..strategies import QualityReview
from ..trainers.quality import QualityTrain


class Quality(BundleTaskConfig):
    BUNDLE = "cas_iqa"

    def infer(self):
        return {self.name: QualityInfer(self.bundle_path, self.conf, self.overrides)}

    def trainer(self):
        return QualityTrain(self.bundle_path, self.conf, self.overrides)

    def strategy(self):
        return {"quality_lowest": QualityReview("quality_score", lowest_first=True), "quality_uncertain": QualityReview("quality_uncertainty", lowest_first=False)}

    def scoring_method(self):
        return {"quality": QualityScoring(QualityInfer(self.bundle_path, self.conf, self.overrides))}
