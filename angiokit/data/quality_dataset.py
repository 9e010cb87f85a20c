"""Datasets of scored synthetic angiograms for CAS-IQA (the synthetic benchmark or imported CSVs).

A sample: image (S), fluoro (F), reference (C) as [1, S, S] in [0, 1] (a missing auxiliary
image is zeros with ``<name>_available`` False), ``target`` [M, 6]: the raters' distribution
over the five levels and the MOS per metric. Intensities are scaled by a fixed 1/255, not per
image: blotches and wash-outs are what is being judged.
"""

from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandRotate90d, Resized, ScaleIntensityRanged

from .errors import AngioDataError
from .pretrain import LoadAngiogramd
from .quality import METRICS, benchmark_mismatch, benchmark_settings, read_scores_csv, write_quality_benchmark

AUX = {"fluoro": "aux_fluoro", "reference": "aux_reference"}
IMAGE_KEYS = ("image", "fluoro", "reference")


class FillMissingAuxd:
    """Zeros for auxiliary images a row does not have (still a path-less "" after loading), and
    the availability flags."""

    def __call__(self, d: Dict) -> Dict:
        d = dict(d)
        for key in AUX:
            missing = isinstance(d.get(key, ""), str)
            d[f"{key}_available"] = torch.tensor(not missing)
            if missing:
                d[key] = torch.zeros_like(d["image"])
        return d


def quality_transforms(image_size: int, augment: bool = False) -> Compose:
    """The cas_iqa bundle spells this pipeline out in its configs (``train#preprocessing``,
    ``validate#preprocessing``, ``preprocessing``); this one serves code without a bundle."""
    keys = list(IMAGE_KEYS)
    steps = [
        LoadAngiogramd(keys, allow_missing_keys=True),
        FillMissingAuxd(),
        ScaleIntensityRanged(keys, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
        Resized(keys, spatial_size=(image_size, image_size), mode="area"),
        # targets given as nested lists (e.g. MONAI Label ratings passed as config overrides)
        EnsureTyped("target", dtype=torch.float32, track_meta=False, allow_missing_keys=True),
    ]
    if augment:
        # the eight flips and quarter turns: a frame's quality does not depend on its
        # orientation, and the same transform reaches S, F and C (their pixels must stay aligned)
        steps += [RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1), RandRotate90d(keys, prob=0.5, max_k=1)]
    return Compose(steps)


def rows_to_items(rows: List[dict], metrics: Sequence[str] = METRICS) -> List[dict]:
    items = []
    for r in rows:
        target = np.array([r[f"{m}_distribution"] + [r[f"{m}_mos"]] for m in metrics], dtype=np.float32)
        item = {"image": r["image"], "target": torch.from_numpy(target), "case": r["case"]}
        for key, column in AUX.items():
            item[key] = r.get(column, "")
        items.append(item)
    return items


def default_benchmark(root: str, n: int = 300, size: int = 256, seed: int = 0, workers: int = 1) -> str:
    """``root``/scores.csv of the synthetic benchmark, generated on first use and again when the
    cached one was made otherwise (another number of cases, image size, seed or label rule:
    ``benchmark_mismatch``; cases are seeded per index, so a count change keeps the cases it had
    and renders only new ones, and a label rule change alters only the labels); ``workers``
    processes render it."""
    path = os.path.join(root, "scores.csv")
    if not os.path.isfile(path) or benchmark_mismatch(root, benchmark_settings(n, size, seed)):
        write_quality_benchmark(root, n=n, size=size, seed=seed, workers=workers)
    return path


def prepare_default_benchmark(scores_csv: str, benchmark_dir: str, n: int = 300, size: int = 256, seed: int = 0, workers: int = 1) -> Optional[str]:
    """The cas_iqa bundle's data step, the first of its ``initialize`` (so before any dataset is
    built, and never when a config is merely parsed): ``default_benchmark`` in ``benchmark_dir``
    when ``scores_csv`` is that benchmark's scores.csv, i.e. no data of the user's was given
    (neither ``dataset_dir`` nor ``scores_csv``). Any other CSV, or none ("": the MONAI Label app,
    whose items are the annotators' ratings), is left alone. Returns the path written or None."""
    default_csv = os.path.join(benchmark_dir, "scores.csv")
    if not scores_csv or os.path.abspath(scores_csv) != os.path.abspath(default_csv):
        return None
    return default_benchmark(benchmark_dir, n=n, size=size, seed=seed, workers=workers)


def score_items(scores_csv: str, splits: Sequence[str] = ("training",)) -> List[dict]:
    """Items of the rows of ``scores_csv`` in ``splits`` (rows without a split belong to every
    split): the standard ``train#dataset#data`` of the CAS-IQA bundle."""
    rows = [r for r in read_scores_csv(scores_csv) if not r["split"] or r["split"] in splits]
    if not rows:
        raise AngioDataError(scores_csv, f"no rows in splits {list(splits)}")
    return rows_to_items(rows)


def prepare_quality_batch(batch: Dict, device=None, non_blocking: bool = False, **_):
    """MONAI ``prepare_batch``: (S, target, (), auxiliary images and their flags as kwargs), as
    plain tensors: a MetaTensor carries its metadata through every op of the network, reading
    it back on the host (a sync per op on CUDA)."""

    def move(t):
        t = t.as_tensor() if hasattr(t, "as_tensor") else t
        return t.to(device, non_blocking=non_blocking)

    kwargs = {k: move(batch[k]).float() for k in ("fluoro", "reference")}
    kwargs.update({f"{k}_available": move(batch[f"{k}_available"]) for k in ("fluoro", "reference")})
    target = move(batch["target"]) if "target" in batch else None
    return move(batch["image"]).float(), target, (), kwargs


def folder_items(input_glob: str) -> List[dict]:
    """Synthetic angiograms to score from files matching ``input_glob`` (comma-separated globs
    allowed); auxiliary images are found by the naming rule ``<stem>_aux_fluoro.<ext>`` and
    ``<stem>_aux_reference.<ext>`` beside each image (files named ``*_aux_*`` are not scored)."""
    items = []
    for pattern in [p.strip() for p in str(input_glob).split(",") if p.strip()]:
        found = sorted(f for f in glob.glob(pattern) if os.path.isfile(f) and not is_auxiliary(f) and not f.endswith((".csv", ".json")))
        if not found:
            raise AngioDataError(pattern, "no images to score match")
        for path in found:
            item = {"image": path, "target": torch.zeros(len(METRICS), 6), "case": _split_name(os.path.basename(path))[0]}
            item.update(auxiliary_paths(path))
            items.append(item)
    return items


def _split_name(name: str):
    return (name[: -len(".nii.gz")], ".nii.gz") if name.lower().endswith(".nii.gz") else os.path.splitext(name)


def is_auxiliary(path: str) -> bool:
    return "_aux_" in os.path.basename(path)


def auxiliary_paths(image_path: str) -> Dict[str, str]:
    """The naming rule: {"fluoro": "<stem>_aux_fluoro.<ext>", "reference": ...} beside the image,
    "" for those that do not exist."""
    stem, ext = _split_name(os.path.basename(image_path))
    folder = os.path.dirname(image_path)
    paths = {key: os.path.join(folder, f"{stem}_{suffix}{ext}") for key, suffix in AUX.items()}
    return {key: path if os.path.isfile(path) else "" for key, path in paths.items()}


def inference_dataset(input_glob: Optional[str] = None, scores_csv: Optional[str] = None, image_size: int = 224, transform=None) -> Dataset:
    """``transform``: the bundle's ``preprocessing`` (default ``quality_transforms``)."""
    items = folder_items(input_glob) if input_glob else rows_to_items(read_scores_csv(scores_csv))
    return Dataset(items, transform=transform if transform is not None else quality_transforms(image_size, augment=False))
