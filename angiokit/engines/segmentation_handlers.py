"""Ignite handlers of the vessel segmentation bundle: mask writers (PNG, NIfTI, DICOM SEG) for
inference and error-overlay figures for evaluation."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..data.readers import detect_format
from ..data.writers import write_mask_png, write_nifti, write_png
from ..visualize import error_overlay, save_grid, to_display


def _source_path(item) -> str:
    meta = getattr(item, "meta", None) or {}
    name = meta.get("filename_or_obj", "")
    return name[0] if isinstance(name, (list, tuple)) else str(name)


def _labels(pred: torch.Tensor) -> np.ndarray:
    """[C, ...] probabilities / one-hot, or [1, ...] class indices -> integer class map."""
    p = pred.detach().float().cpu()
    return (p.argmax(0) if p.shape[0] > 1 else p[0]).numpy().astype(np.uint8)


class SegmentationWriter:
    """Write each input's predicted classes next to its name in ``output_dir``:
    PNG (0/255 for 2 classes, class ids otherwise; one per frame), NIfTI (class ids, a cine as
    (H, W, 1, T)) and, for DICOM inputs, a DICOM SEG referencing the source frames.

    Works with batches of frames (one prediction per image) and with ``CineInferer`` outputs
    (T predictions for one input)."""

    def __init__(self, output_dir: str, formats: Sequence[str] = ("png", "nifti", "dicom_seg"), num_classes: int = 2):
        unknown = set(formats) - {"png", "nifti", "dicom_seg"}
        if unknown:
            raise ValueError(f"unknown output formats {sorted(unknown)}")
        self.output_dir, self.formats, self.num_classes = output_dir, tuple(formats), int(num_classes)
        self._stems: set = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self._stems.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        out = engine.state.output
        items = out if isinstance(out, list) else [out]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        for item, source in zip(items, batch):
            self.write(item["pred"], _source_path(source["image"]))

    def write(self, pred: torch.Tensor, source: str) -> list:
        """pred [C, H, W] (one frame) or [T, C, H, W] (a cine); returns the written paths."""
        frames = np.stack([_labels(p) for p in (pred if pred.ndim == 4 else pred[None])])
        name = os.path.basename(source)
        stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else os.path.splitext(name)[0]
        if stem in self._stems:  # e.g. case.png and case.dcm in one run: keep both outputs
            stem = name.replace(".", "_")
        self._stems.add(stem)
        written = []
        if "png" in self.formats:
            for t, frame in enumerate(frames):
                name = f"{stem}_seg.png" if len(frames) == 1 else f"{stem}_f{t:03d}_seg.png"
                path = os.path.join(self.output_dir, name)
                written.append(write_mask_png(path, frame) if self.num_classes == 2 else write_png(path, frame))
        if "nifti" in self.formats:
            written.append(write_nifti(os.path.join(self.output_dir, f"{stem}_seg.nii.gz"), frames))
        if "dicom_seg" in self.formats and os.path.isfile(source) and detect_format(source) == "dicom":
            from ..data.dicom_seg import write_dicom_seg

            written.append(write_dicom_seg(os.path.join(self.output_dir, f"{stem}_seg.dcm"), frames > 0, source))
        return written


class ErrorOverlayWriter:
    """Evaluation figures: per image, the frame, the ground truth and the prediction with its
    errors coloured (green hits, red false positives, blue misses), up to ``max_images``."""

    def __init__(self, output_dir: str, max_images: int = 20):
        self.output_dir, self.max_images, self.count = output_dir, int(max_images), 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: setattr(self, "count", 0))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        out = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in out:
            if self.count >= self.max_images:
                return
            image = item["image"].detach().cpu().numpy()[0]
            gt, pred = _labels(item["label"]) > 0, _labels(item["pred"]) > 0
            stem = os.path.splitext(os.path.basename(_source_path(item["image"])))[0] or f"image{self.count}"
            gt_rgb = error_overlay(image, gt, gt)
            save_grid([to_display(image), gt_rgb, error_overlay(image, pred, gt)], os.path.join(self.output_dir, f"{stem}_overlay.png"), 3, ["image", "ground truth", "prediction (red FP, blue FN)"], tile_inches=2.6, dpi=90)
            self.count += 1


def batch_one_hot(x: torch.Tensor, num_classes: int, argmax: bool = False) -> torch.Tensor:
    """[B, C, H, W] logits (``argmax``) or [B, 1, H, W] class indices -> one-hot [B, classes, H, W]
    float, for the whole batch on its device: the training iterations' post-processing (MONAI's
    ``AsDiscreted`` works per item, after a decollation that reads the loss on the host)."""
    classes = x.argmax(1, keepdim=True) if argmax else x[:, :1].long()
    # a comparison, not F.one_hot: that one checks the index range on the host
    return (classes == torch.arange(num_classes, device=x.device).view(1, -1, 1, 1)).to(torch.float32)
