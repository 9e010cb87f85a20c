"""Data for self-supervised pre-training: unlabeled frames from a datalist or a folder glob, or,
with neither, synthetic angiograms generated on the fly.

Each sample is {"image": [1, S, S] float in [0, 1]} (plus "prior" [1, S, S] when the datalist
has pre-computed priors). Real frames get the MAE / VasoMIM augmentation: a random resized crop
(20-100 % of the area, aspect ratio 3/4-4/3, bicubic; nearest for the binary prior) to S and a
horizontal flip.
"""

from __future__ import annotations

import glob as globlib
import os
from typing import Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, MapTransform, RandFlipd, Resized, ScaleIntensityRanged, ScaleIntensityRangePercentilesd

from ..transforms.crop import RandResizedCropd
from .datalist import SPLITS, read_entries
from .errors import AngioDataError
from .readers import read_angiogram


class LoadAngiogramd(MapTransform):
    """Load frames with angiokit's readers (PNG/JPEG, DICOM XA, NIfTI) as [1, H, W] MetaTensors.

    The frame of a cine comes from the item's ``frame`` key when present, else ``frame``
    (default: the frame of maximum contrast). A 3-D NIfTI is read as a stack of frames (a cine
    exported by ITK / 3D Slicer / MONAI Label, or its label).
    """

    def __init__(self, keys: KeysCollection, frame="max_contrast", allow_missing_keys: bool = False, volume_as_frames: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.frame, self.volume_as_frames = frame, volume_as_frames

    def __call__(self, data: Mapping[Hashable, object]):
        d = dict(data)
        # the item's frame is used up here (kept in the meta data as "frame", -1 when chosen by
        # rule), so items of stills and of cine frames collate into one batch
        frame = d.pop("frame", self.frame)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)) or not str(path):
                continue  # already loaded, or an optional image that is absent ("")
            angio = read_angiogram(path, frames=frame, volume_as_frames=self.volume_as_frames)
            meta = {"filename_or_obj": str(path), "pixel_spacing_mm": angio.meta.get("pixel_spacing_mm") or 0.0, "frame": frame if isinstance(frame, int) else -1}
            d[key] = MetaTensor(torch.from_numpy(angio.frames), meta=meta)
        return d


def pretrain_transforms(image_size: int, keys: Sequence[str] = ("image",), augment: bool = True) -> Compose:
    """Load, scale the image to [0, 1] (0.5-99.5 percentiles) and a stored prior from 0-255,
    then the official augmentation: a random resized crop to ``image_size`` (20-100 % of the
    area, aspect ratio 3/4-4/3; bicubic for the image, nearest for the binary prior) and a
    horizontal flip, the same for every key; without ``augment`` a resize. The vasomim_pretrain
    bundle spells the same pipeline out in its configs (``train#preprocessing``); this one serves
    code without a bundle (``apps.prepare bootstrap-segmenter``)."""
    keys = list(keys)
    steps = [LoadAngiogramd(keys), ScaleIntensityRangePercentilesd(keys[:1], lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)]
    if "prior" in keys:  # priors from ``apps.prepare priors`` are stored as 0/255
        steps.append(ScaleIntensityRanged("prior", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True))
    if augment:
        steps.append(RandResizedCropd(keys, size=image_size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), mode=["bicubic"] + ["nearest"] * (len(keys) - 1)))
        steps.append(RandFlipd(keys, prob=0.5, spatial_axis=1))
    else:
        steps.append(Resized(keys, spatial_size=(image_size, image_size), mode=["area"] + ["nearest"] * (len(keys) - 1)))
    return Compose(steps)


class SyntheticPretrainDataset(torch.utils.data.Dataset):
    """``length`` synthetic angiograms, generated when asked for (a new scene per index and
    epoch, reproducible from ``seed``)."""

    def __init__(self, length: int = 1024, image_size: int = 224, seed: int = 0, **config):
        from .synthetic import default_config

        self.length, self.seed, self.epoch = int(length), int(seed), 0
        self.cfg = default_config(size=int(image_size), **config)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer's sampler hook (or by hand) for fresh scenes every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        from .synthetic import synthesize

        seed = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
        sample = synthesize(self.cfg, seed)
        return {"image": torch.from_numpy(sample.image[:1].copy())}


def _datalist_items(datalist: str, splits: Sequence[str]) -> List[dict]:
    keep = ("image", "frame", "prior")
    return [{k: e[k] for k in keep if k in e} for e in read_entries(datalist, splits)]


PRIOR_FOLDER_SUFFIX = "_frangi"
"""XA-170K (Hugging Face ``waha2000huang/XA-170K``) ships each source's offline binary vessel
priors in ``<source>_frangi/`` beside ``<source>/``, under the frames' file names."""


def pair_offline_priors(files: Sequence[str], suffix: str = PRIOR_FOLDER_SUFFIX) -> List[dict]:
    """Items ``{"image"[, "prior"]}`` from image files, some of which may be offline priors.

    A file below a folder ``<x>_frangi`` that has a sibling folder ``<x>`` is a prior and never
    becomes a frame. A frame below a folder ``<x>`` that has a sibling ``<x>_frangi`` gets
    ``"prior"``: the same relative path under ``<x>_frangi``, where that file exists (frames
    without one get no "prior": it is computed on the fly). The nearest such folder above a file
    decides; any other tree is plain frames.
    """
    is_dir: dict = {}

    def isdir(path: str) -> bool:  # a few distinct folders for many files: ask the disk once each
        if path not in is_dir:
            is_dir[path] = os.path.isdir(path)
        return is_dir[path]

    items = []
    for path in files:
        prior, is_prior = None, False
        folder = os.path.dirname(os.path.abspath(path))
        while os.path.basename(folder):
            if folder.endswith(suffix) and os.path.basename(folder) != suffix and isdir(folder[: -len(suffix)]):
                is_prior = True
                break
            if isdir(folder + suffix):
                candidate = os.path.join(folder + suffix, os.path.relpath(os.path.abspath(path), folder))
                if os.path.isfile(candidate):
                    prior = candidate if os.path.isabs(path) else os.path.relpath(candidate)  # in the frame's form
                break
            folder = os.path.dirname(folder)
        if not is_prior:
            items.append({"image": path, "prior": prior} if prior else {"image": path})
    return items


def pretrain_items(datalist: Optional[str] = None, data_glob: Optional[str] = None, splits: Sequence[str] = ("training",)) -> List[dict]:
    """Unlabeled frames from comma-separated datalists (their ``splits``; labels ignored) and/or
    comma-separated globs. [] when neither is given (synthetic data).

    Glob matches are read as XA-170K lays them out (``pair_offline_priors``): files in a
    ``<source>_frangi`` folder are the priors of the frames in ``<source>``, never frames.
    """
    items: List[dict] = []
    for path in [p.strip() for p in str(datalist or "").split(",") if p.strip()]:
        items += _datalist_items(path, splits)
    for pattern in [p.strip() for p in str(data_glob or "").split(",") if p.strip()]:
        found = sorted(globlib.glob(pattern, recursive=True))
        if not found:
            raise AngioDataError(pattern, "glob matches no files")
        frames = pair_offline_priors(found)
        if not frames:
            raise AngioDataError(pattern, f"glob matches only offline priors (files in <source>{PRIOR_FOLDER_SUFFIX} folders), no frames")
        items += frames
    return items


def pretrain_dataset(data: Sequence[dict] = (), image_size: int = 224, synthetic_length: int = 1024, seed: int = 0, augment: bool = True, transform=None):
    """``data`` (items with "image" and optionally pre-computed "prior") through ``transform``
    (the bundle's ``train#preprocessing``; default ``pretrain_transforms``), or, when empty,
    synthetic angiograms (already at ``image_size`` and in [0, 1]: no transform). ``data`` is the
    standard ``train#dataset#data`` a bundle caller may override."""
    items = list(data)
    if not items:
        return SyntheticPretrainDataset(synthetic_length, image_size, seed)
    keys = ["image", "prior"] if all("prior" in it for it in items) else ["image"]
    if len(keys) == 1:
        # priors for only some frames would not collate into one batch
        items = [{k: v for k, v in it.items() if k != "prior"} for it in items]
    return Dataset(items, transform=transform if transform is not None else pretrain_transforms(image_size, keys, augment))


__all__ = ["LoadAngiogramd", "PRIOR_FOLDER_SUFFIX", "SPLITS", "SyntheticPretrainDataset", "pair_offline_priors", "pretrain_dataset", "pretrain_items", "pretrain_transforms"]
