"""Fine-tuning the CAS-IQA scorer on the annotators' quality ratings (cas_iqa bundle)."""

from __future__ import annotations

from angiokit.data.quality import rating_target, read_rating
from angiokit.data.quality_dataset import auxiliary_paths

from ..datastore import QUALITY_TAG
from .bundle_train import AngioBundleTrain


class QualityTrain(AngioBundleTrain):
    """Items of the studies with a ``quality`` label: the rating as the target (one rater: the
    distribution over levels is the score itself), auxiliary images by the naming rule."""

    def _fetch_datalist(self, request, datastore):
        items = []
        for image_id in datastore.list_images():
            label = datastore.get_label_uri(image_id, QUALITY_TAG) if datastore.get_label_by_image_id(image_id, QUALITY_TAG) else ""
            if not label:
                continue
            image = datastore.get_image_uri(image_id)
            items.append({"image": image, **auxiliary_paths(image), "target": rating_target(read_rating(label)), "case": image_id})
        return items

    def _update_overrides(self, overrides):
        # the ratings are both datasets' items: no scores CSV, so the bundle's first step
        # (prepare_default_benchmark) writes no synthetic benchmark into the working copy. In
        # place: MONAI Label's train task ignores the return value
        overrides = super()._update_overrides(overrides)
        overrides["scores_csv"] = ""
        return overrides
