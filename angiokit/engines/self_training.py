"""Self-training on unlabelled real frames: a teacher's confident answers become the labels a
student learns from, beside the synthetic frames (the label-free recipe's last step).

    pseudo_label(teacher, files, out_dir)   -> out_dir/datalist.json ("training": the kept frames)

Confidence filtering is per frame: a frame's score is the share of its pixels the teacher is
sure of (vessel or background probability >= ``confidence``); the best ``keep_fraction`` of the
frames are kept with hard labels (probability >= 0.5). Per frame rather than per pixel because
the bundle's Dice + cross-entropy has no ignore label, and a frame the teacher half-understands
teaches the student its mistakes wherever it is unsure.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..data.readers import load_frame
from ..data.writers import atomic_path, write_png
from ..data.domain import normalise_frame
from .inferers import ResizeInferer


@torch.no_grad()
def vessel_probability(network: torch.nn.Module, frame: np.ndarray, image_size: int, device: str | torch.device = "cpu") -> np.ndarray:
    """[H, W] frame (any grey scale) -> [H, W] vessel probability at the frame's size, as the
    bundle's evaluation sees it (0.5 / 99.5 percentile scaling, resized to the network)."""
    x = torch.from_numpy(normalise_frame(frame))[None, None].to(device)
    logits = ResizeInferer(int(image_size))(x, network)
    return torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()


def frame_confidence(probability: np.ndarray, confidence: float = 0.9) -> float:
    """Share of the pixels whose vessel or background probability is at least ``confidence``."""
    return float((np.maximum(probability, 1.0 - probability) >= confidence).mean())


def pseudo_label(network: torch.nn.Module, files: Sequence[str], out_dir: str, image_size: int, confidence: float = 0.9, keep_fraction: float = 0.5,
                 device: str | torch.device = "cpu", progress: bool = True) -> str:
    """Label ``files`` with ``network`` (eval mode), keep the most confident ``keep_fraction`` of
    them: labels as PNG under ``out_dir``/labels and a datalist whose "training" split pairs them
    with their frames where they are (every frame's score is in "scores"); returns its path."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if not files:
        raise ValueError("pseudo_label needs unlabelled real frames; got none")
    from tqdm import tqdm

    labels = os.path.join(out_dir, "labels")
    os.makedirs(labels, exist_ok=True)
    network = network.to(device).eval()
    scored: List[Dict] = []
    for i, path in enumerate(tqdm(files, desc="pseudo-labels", disable=not progress)):
        probability = vessel_probability(network, load_frame(path)[0], image_size, device)
        name = f"{i:05d}_{os.path.splitext(os.path.basename(path))[0]}.png"
        write_png(os.path.join(labels, name), (255 * (probability >= 0.5)).astype(np.uint8))  # every frame's: kept ones are listed
        scored.append({"image": os.path.abspath(path), "label": os.path.join("labels", name), "score": frame_confidence(probability, confidence),
                       "vessel_fraction": float((probability >= 0.5).mean())})
    # frames with no vessel at all are confident and useless: they need some foreground
    ranked = sorted((s for s in scored if s["vessel_fraction"] > 0.005), key=lambda s: -s["score"])
    kept = {s["label"] for s in ranked[: max(1, int(round(keep_fraction * len(scored))))]}
    doc = {
        "description": f"pseudo-labels: {len(kept)} of {len(files)} unlabelled frames kept (per-frame share of pixels with probability >= {confidence}, best {keep_fraction:.0%})",
        "training": [{"image": s["image"], "label": s["label"]} for s in scored if s["label"] in kept],
        "scores": [s | {"kept": s["label"] in kept} for s in scored],
    }
    path = os.path.join(out_dir, "datalist.json")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
    return path


__all__ = ["frame_confidence", "pseudo_label", "vessel_probability"]
