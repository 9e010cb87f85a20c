"""How well a VasoMIM fills in its masked patches, against the simplest guess.

Per frame (``masked_patch_errors``), over the masked patches only, in the pixel space of the
frames the network was given (intensities scaled to [0, 1] by the bundle's transforms):

- ``model``: MSE of the network's prediction (de-normalised, when ``norm_pix_loss``, with each
  hidden patch's own mean and std, as MAE shows it: those two numbers come from the target);
- ``mean_predictor``: MSE of predicting every pixel of every masked patch by one number, the
  mean intensity of all pixels of the same frame's visible patches (all channels pooled);
- ``patch_mean_oracle``: MSE of predicting each masked patch by its own true mean, i.e. what a
  ``norm_pix_loss`` model that predicts zeros scores after that de-normalisation.

``ReconstructionMetricsWriter`` collects them over an evaluator run and writes
``reconstruction_metrics.json``: mean and sd (sample sd, ddof 1) over frames and n.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..data.writers import atomic_path

ERRORS = ("model", "mean_predictor", "patch_mean_oracle")


def masked_patch_errors(mae, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-frame masked-patch MSEs [B] (float32, on the device; no host sync).

    Args:
        mae: the ``VasoMIM`` (for patchify and the de-normalisation of ``pred``).
        images: [B, C, H, W] frames as the network saw them.
        pred: [B, N, p*p*C] predicted patches (normalised targets when ``norm_pix_loss``).
        mask: [B, N], 1 = masked (at least one masked and one visible patch per frame).
    """
    target = mae.patchify(images).float()  # [B, N, P]
    predicted = mae.pixel_prediction(images, pred.float()).float()
    masked = mask.float()  # [B, N]
    visible = 1.0 - masked
    num_masked = masked.sum(1)
    # every patch holds the same number of pixels, so the mean of patch means is the pixel mean
    visible_mean = (target.mean(-1) * visible).sum(1) / visible.sum(1)  # [B]

    def over_masked(per_patch: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B]
        return (per_patch * masked).sum(1) / num_masked

    return {
        "model": over_masked(((predicted - target) ** 2).mean(-1)),
        "mean_predictor": over_masked(((target - visible_mean[:, None, None]) ** 2).mean(-1)),
        "patch_mean_oracle": over_masked(target.var(-1, unbiased=False)),
    }


def summarize(values: List[float]) -> Dict[str, float]:
    """mean, sample sd (ddof 1; 0 for one value) and n of a list of per-frame values."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else float("nan"), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


class ReconstructionMetricsWriter:
    """Collects the evaluator's per-frame ``masked_mse`` outputs and, when the run completes,
    writes ``filename`` in ``output_dir`` (atomically): per error kind its mean, sd and n over
    frames, the model / mean-predictor ratio, the masking it was measured under and each frame's
    values."""

    def __init__(self, output_dir: str, filename: str = "reconstruction_metrics.json"):
        self.path = os.path.join(output_dir, filename)
        self.frames: List[Dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.frames.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        errors = {k: output["masked_mse"][k].detach().cpu().tolist() for k in ERRORS}
        names = list(output.get("filename", []))
        for i in range(len(errors["model"])):
            name = os.path.basename(str(names[i])) if i < len(names) else f"sample_{engine.state.iteration}_{i}"
            self.frames.append({"frame": name, **{k: errors[k][i] for k in ERRORS}})

    def summary(self, engine: Engine) -> Dict:
        network = getattr(engine.network, "module", engine.network)
        stats = {k: summarize([f[k] for f in self.frames]) for k in ERRORS}
        objective = getattr(engine, "objective", None)
        guided = bool(objective is not None and objective.guided)
        return {
            "what": "MSE over the masked patches, in the pixel space of the input frames (scaled to [0, 1]); "
            "mean_predictor: each masked patch predicted by the mean intensity of the same frame's visible patches; "
            "patch_mean_oracle: each masked patch predicted by its own true mean; sd: sample sd over frames",
            "n": len(self.frames),
            **{f"{k}_masked_mse": stats[k] for k in ERRORS},
            "model_over_mean_predictor": stats["model"]["mean"] / max(stats["mean_predictor"]["mean"], 1e-12),
            "masking": {"guided": guided, "alpha": float(getattr(engine, "alpha", 0.0)) if guided else 0.0, "mask_ratio": float(network.masking_ratio)},
            "norm_pix_loss": bool(network.norm_pix_loss),
            "frames": self.frames,
        }

    def write(self, engine: Engine) -> str:
        with atomic_path(self.path) as tmp, open(tmp, "w") as f:
            json.dump(self.summary(engine), f, indent=2)
        return self.path
