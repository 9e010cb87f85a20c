"""Active learning strategies of the app (``/activelearning/<name>``).

- ``random`` and ``epistemic`` are MONAI Label's (``epistemic`` ranks by the stored
  ``epistemic_entropy``); ``branch_uncertainty`` is MONAI Label's ``Epistemic`` ranking by
  ``branch_entropy`` instead: the frames whose thin vessels the segmenter is least sure of.
  Why: the main coronary trunks are rarely wrong after a few labels; distal and side branches
  are where models miss vessels and break the tree's topology (what clDice measures), where
  annotators' corrections change the model most, and the frame-average entropy is dominated by
  the large background, so it ranks frames by noise and catheter edges more than by branches.
- ``quality_lowest`` / ``quality_uncertain``: synthetic angiograms without a quality rating,
  those the scorer rates worst (mean of the three scores) or is least sure of (entropy of its
  level distributions) first.
"""

from __future__ import annotations

import logging
import time

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from .datastore import unrated_images

logger = logging.getLogger(__name__)


class QualityReview(Strategy):
    """Unrated studies ranked by a stored quality score; unscored ones come last. Among the
    ``top_k`` best ranked, the one served least recently (so two annotators asking at once
    get different studies)."""

    def __init__(self, key: str, lowest_first: bool, top_k: int = 8):
        order = "lowest" if lowest_first else "highest"
        super().__init__(f"Synthetic angiograms without a quality rating, {order} {key} first")
        self.key, self.lowest_first, self.top_k = key, lowest_first, int(top_k)

    def __call__(self, request, datastore: Datastore):
        images = unrated_images(datastore)
        if not images:
            return None
        strategy = request.get("strategy", "")
        infos = {i: datastore.get_image_info(i) for i in images}
        scored = [i for i in images if self.key in infos[i]]
        scored.sort(key=lambda i: infos[i][self.key], reverse=not self.lowest_first)
        ranked = scored + [i for i in images if self.key not in infos[i]]
        top = ranked[: self.top_k]
        served = {i: infos[i].get("strategy", {}).get(strategy, {}).get("ts", 0) for i in top}
        image = min(top, key=lambda i: (served[i], top.index(i)))
        logger.info(f"{strategy}: {image} ({self.key}={infos[image].get(self.key)}; served at {served[image] or 'never'}; now {int(time.time())})")
        return {"id": image, self.key: infos[image].get(self.key)}
