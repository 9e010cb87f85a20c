"""Data for vessel segmentation: datalists from ``apps.prepare`` / ``apps.synth``, or synthetic
angiograms with exact masks generated on the fly.

The transform pipelines are spelled out in the xa_vessel_seg bundle's configs (``train#preprocessing``,
``validate#preprocessing``), one ID per transform: training samples are resized to the network's
size (``image_size``) and augmented; validation, evaluation and inference keep the original size
(the inferer resizes for the network and resizes the prediction back), so metrics and outputs are
at the input's resolution.
"""

from __future__ import annotations

import os
from typing import Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import Dataset, MetaTensor
from monai.transforms import MapTransform

from .datalist import PATH_KEYS, read_entries
from .errors import AngioDataError


class LabelToClassesd(MapTransform):
    """Binary tasks (num_classes 2): any non-zero value is foreground (0/1 and 0/255 masks alike).
    Multi-class: values must be class indices below ``num_classes``."""

    def __init__(self, keys: KeysCollection = "label", num_classes: int = 2, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.num_classes = int(num_classes)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if self.num_classes == 2:
                d[key] = (label > 0).to(torch.float32)
                continue
            top = int(label.max())
            if top >= self.num_classes or label.min() < 0:
                name = getattr(label, "meta", {}).get("filename_or_obj", key)
                raise AngioDataError(name, f"label values go up to {top}; expected class indices 0..{self.num_classes - 1} (num_classes={self.num_classes})")
            d[key] = label.round().to(torch.float32)
        return d


class SyntheticSegmentationDataset(torch.utils.data.Dataset):
    """Synthetic frames and exact vessel masks, made when asked for. ``fresh`` gives new scenes
    every epoch (training: with ``FreshSceneSampler``'s indices, or ``set_epoch``); otherwise the same ``length`` scenes always (validation / test).
    ``vessel_layer``: items also hold the vessels' own line integral, [1, H, W] under
    "vessel_layer" (for ``angiokit.data.domain.CompositeOnRealBackgroundd``)."""

    def __init__(self, length: int = 512, image_size: int = 224, seed: int = 0, fresh: bool = True, transform=None, vessel_layer: bool = False, **config):
        from .synthetic import default_config

        self.length, self.seed, self.fresh, self.epoch, self.transform = int(length), int(seed), bool(fresh), 0, transform
        self.vessel_layer = bool(vessel_layer)
        self.cfg = default_config(size=int(image_size), **config)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch) if self.fresh else 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        from .synthetic import synthesize

        # an index past ``length`` (FreshSceneSampler's) names a scene of a later epoch
        epoch, index = (self.epoch + int(index) // self.length, int(index) % self.length) if self.fresh else (0, int(index))
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        s = synthesize(self.cfg, seed, vessel_layer=self.vessel_layer)
        meta = {"filename_or_obj": f"synthetic_{self.seed}_{epoch}_{index:05d}"}
        item = {"image": MetaTensor(torch.from_numpy(s.image[:1].copy()), meta=dict(meta)), "label": MetaTensor(torch.from_numpy(s.vessel[:1].astype(np.float32)), meta=dict(meta))}
        if self.vessel_layer:
            item["vessel_layer"] = torch.from_numpy(s.vessel_line_integral[:1].copy())
        return self.transform(item) if self.transform is not None else item


class FreshSceneSampler(torch.utils.data.Sampler):
    """Epoch e (from 0) yields ``e * length + a permutation of range(length)``: with a fresh
    ``SyntheticSegmentationDataset`` every epoch sees new scenes, shuffled, reproducibly for a
    seed. The epoch is counted here, in the main process, so it reaches the data workers
    (persistent or not) with the indices; a dataset attribute set per epoch would not."""

    def __init__(self, length: int, seed: int = 0):
        self.length, self.seed, self.epoch = int(length), int(seed), 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        start, self.epoch = self.epoch * self.length, self.epoch + 1
        return iter((start + order).tolist())


class MixedSegmentationDataset(torch.utils.data.Dataset):
    """Real items (a ``Dataset``) followed by fresh synthetic scenes, one epoch = both; an index
    past the length (``FreshSceneSampler``'s) gives the same real items and later scenes.
    Self-training's student learns from pseudo-labelled real frames and synthetic ones."""

    def __init__(self, real: torch.utils.data.Dataset, synthetic: SyntheticSegmentationDataset):
        self.real, self.synthetic, self.fresh = real, synthetic, synthetic.fresh

    def __len__(self) -> int:
        return len(self.real) + len(self.synthetic)

    def __getitem__(self, index: int) -> dict:
        epoch, index = divmod(int(index), len(self))
        if index < len(self.real):
            return self.real[index]
        return self.synthetic[epoch * len(self.synthetic) + index - len(self.real)]


def training_sampler(dataset, seed: int = 0) -> torch.utils.data.Sampler:
    """The training loader's sampler: ``FreshSceneSampler`` for fresh synthetic scenes (alone or
    mixed with real items), else a seeded random permutation per epoch (the loader's
    ``shuffle`` stays false)."""
    if isinstance(dataset, (SyntheticSegmentationDataset, MixedSegmentationDataset)) and dataset.fresh:
        return FreshSceneSampler(len(dataset), seed)
    return torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(int(seed)))


def datalist_items(datalist: str, splits: Sequence[str], label_key: Optional[str] = "label", allow_empty: bool = False) -> List[dict]:
    """Entries of ``splits`` with absolute paths: {"image", "label"?, "frame"?} (the label read
    from ``label_key``, e.g. "label_multiclass")."""
    items = []
    required = ("image", label_key) if label_key else ("image",)
    for e in read_entries(datalist, splits, required=required, allow_empty=allow_empty, path_keys=PATH_KEYS + required):
        item = {"image": e["image"]}
        if label_key:
            item["label"] = e[label_key]
        if "frame" in e:
            item["frame"] = e["frame"]
        items.append(item)
    return items


def items_from_datalists(datalists: Optional[str], splits: Sequence[str], label_key: Optional[str] = "label") -> List[dict]:
    """Items of ``splits`` from comma-separated datalists (repeat one to oversample it); a split
    may be missing from some of the lists, not from all. No datalist: [] (synthetic data)."""
    paths = [p.strip() for p in str(datalists or "").split(",") if p.strip()]
    items: List[dict] = []
    for path in paths:
        items += datalist_items(path, splits, label_key, allow_empty=True)
    if paths and not items:
        raise AngioDataError(str(datalists), f"no entries in {list(splits)} in any of the datalists")
    return items


def segmentation_dataset(data: Sequence[dict], transform, synthetic_length: int = 512, image_size: int = 224, seed: int = 0, fresh: bool = True,
                         vessel_layer: bool = False, mix_synthetic: bool = False, synthetic_config: Optional[Mapping] = None):
    """``Dataset(data, transform)``, or, when ``data`` is empty, synthetic angiograms with exact
    masks run through the same transform (fresh scenes every epoch when ``fresh``, else a fixed
    set; ``vessel_layer``: with the vessels' line integral, for compositing); ``mix_synthetic``:
    both, ``synthetic_length`` scenes after the items (``MixedSegmentationDataset``);
    ``synthetic_config``: engine parameters (``angiokit.data.synthetic.PRESETS``). ``data`` is
    what MONAI Label's bundle train task overrides (``train#dataset#data``)."""
    synthetic = SyntheticSegmentationDataset(synthetic_length, image_size, seed, fresh=fresh, transform=transform, vessel_layer=vessel_layer, **dict(synthetic_config or {}))
    if data and mix_synthetic:
        return MixedSegmentationDataset(Dataset(list(data), transform=transform), synthetic)
    if data:
        return Dataset(list(data), transform=transform)
    return synthetic


def inference_items(datalist: Optional[str] = None, input_glob: Optional[str] = None, splits: Sequence[str] = ("training", "validation", "test")) -> List[dict]:
    """Images to segment: a datalist's images (all splits), files matching a glob
    (comma-separated globs allowed), or both; README / JSON / CSV files are skipped."""
    import glob as globlib

    from .readers import NIFTI_SUFFIXES, RASTER_SUFFIXES, is_dicom_file

    items = datalist_items(datalist, splits, label_key=None) if datalist else []
    for pattern in [p.strip() for p in str(input_glob or "").split(",") if p.strip()]:
        found = [f for f in sorted(globlib.glob(pattern)) if os.path.isfile(f) and (f.lower().endswith(RASTER_SUFFIXES + NIFTI_SUFFIXES + (".dcm",)) or is_dicom_file(f))]
        if not found:
            raise AngioDataError(pattern, "no angiograms (PNG/JPEG/DICOM/NIfTI) match")
        items += [{"image": f} for f in found]
    if not items:
        raise AngioDataError(str(input_glob or datalist), "nothing to segment: give --dataset_dir, --input_glob or --datalist")
    return [{"image": it["image"]} for it in items]
