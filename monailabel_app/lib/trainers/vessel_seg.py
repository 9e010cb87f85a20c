"""Fine-tuning the vessel segmenter on the annotators' labels (xa_vessel_seg bundle)."""

from __future__ import annotations

import logging

from angiokit.data import read_angiogram

from .bundle_train import AngioBundleTrain

logger = logging.getLogger(__name__)


class VesselSegTrain(AngioBundleTrain):
    """Final labels of the datastore; a cine's label (frames x rows x columns) becomes one
    training item per frame that has vessel pixels (frames the annotator left empty are
    usually frames nobody labelled, not frames without vessels)."""

    def _fetch_datalist(self, request, datastore):
        items = []
        for d in super()._fetch_datalist(request, datastore):
            label = read_angiogram(d["label"], volume_as_frames=True).frames
            if label.shape[0] == 1:
                items.append(d)
                continue
            labelled = [t for t in range(label.shape[0]) if label[t].any()]
            logger.info(f"{d['image']}: cine of {label.shape[0]} frames, {len(labelled)} labelled")
            items += [{**d, "frame": t} for t in labelled]
        return items
