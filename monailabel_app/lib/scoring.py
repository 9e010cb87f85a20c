"""Scoring methods: run in the background (``/scoring/<name>``) and store their scores in the
datastore's image info, where the active learning strategies read them.

- ``MCDropoutScoring`` (vessel segmenter): ``epistemic_entropy`` and ``branch_entropy`` of
  each study without a final label, from ``passes`` Monte-Carlo dropout predictions (frames of a
  cine averaged); see ``angiokit.metrics.uncertainty``.
- ``QualityScoring`` (CAS-IQA): ``quality_score`` (mean expected level of the three metrics,
  1-5) and ``quality_uncertainty`` (mean entropy of the level distributions, nats) of each study
  without a quality rating.

A study is scored again only when the model file changed since its last score. A scoring task
process ends with its server (``lib/training.py``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import List

import numpy as np
import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from angiokit.metrics.uncertainty import mc_dropout_scores

from .datastore import unrated_images
from .training import exit_with_server

logger = logging.getLogger(__name__)


def _model_ts(task) -> int:
    path = task.get_path()
    return int(os.stat(path).st_mtime) if path and os.path.exists(path) else 1


class _ModelScoring(ScoringMethod):
    ts_key = ""

    def __init__(self, infer_task, description: str, max_samples: int = 0):
        super().__init__(description)
        self.infer_task, self.max_samples = infer_task, int(max_samples)

    def candidates(self, datastore: Datastore) -> List[str]:
        raise NotImplementedError

    def score(self, image_uri: str, request: dict) -> dict:
        raise NotImplementedError

    def __call__(self, request, datastore: Datastore):
        exit_with_server()  # a scoring task process ends with its server (no-op in the server)
        start, model_ts = time.time(), _model_ts(self.infer_task)
        self.infer_task.clear_cache()  # the model may have been retrained
        todo = [i for i in self.candidates(datastore) if datastore.get_image_info(i).get(self.ts_key) != model_ts]
        max_samples = int(request.get("max_samples", self.max_samples))
        todo = todo[:max_samples] if max_samples else todo
        failed = 0
        for n, image_id in enumerate(todo, 1):
            try:
                scores = self.score(datastore.get_image_uri(image_id), request)
            except Exception as e:  # one unreadable study must not stop the others
                logger.error(f"{type(self).__name__}: {image_id}: {type(e).__name__}: {e}")
                failed += 1
                continue
            datastore.update_image_info(image_id, {**scores, self.ts_key: model_ts})
            logger.info(f"{type(self).__name__}: {n}/{len(todo)} {image_id}: {scores}")
        summary = {"scored": len(todo) - failed, "failed": failed, "latency": round(time.time() - start, 3)}
        logger.info(f"{type(self).__name__}: {summary}")
        return summary


class MCDropoutScoring(_ModelScoring):
    ts_key = "epistemic_ts"

    def __init__(self, infer_task, passes: int = 5, max_samples: int = 0):
        super().__init__(infer_task, f"MC-dropout uncertainty of the vessel segmenter ({passes} passes)", max_samples)
        self.passes = int(passes)

    def candidates(self, datastore):
        return datastore.get_unlabeled_images()

    def score(self, image_uri, request):
        passes = max(2, int(request.get("passes", self.passes)))
        req = {"image": image_uri, "probabilities": True, "skip_writer": True, "logging": "error", "device": request.get("device", "cuda")}
        samples = torch.stack([torch.as_tensor(self.infer_task(req)[1]["pred"]) for _ in range(passes)])  # [N, T, C, H, W]
        per_frame = [mc_dropout_scores(samples[:, t]) for t in range(samples.shape[1])]
        return {key: float(np.mean([s[key] for s in per_frame])) for key in per_frame[0]}


class QualityScoring(_ModelScoring):
    ts_key = "quality_ts"

    def __init__(self, infer_task, max_samples: int = 0):
        super().__init__(infer_task, "CAS-IQA scores of synthetic angiograms without a rating", max_samples)

    def candidates(self, datastore):
        return unrated_images(datastore)

    def score(self, image_uri, request):
        _, result = self.infer_task({"image": image_uri, "logging": "error", "device": request.get("device", "cuda")})
        probabilities = np.array([list(p.values()) for p in result["probabilities"].values()])  # [M, 5]
        entropy = -(probabilities * np.log(np.clip(probabilities, 1e-8, None))).sum(-1)
        return {"quality_score": float(np.mean(list(result["scores"].values()))), "quality_uncertainty": float(entropy.mean()), "quality": result["scores"]}
