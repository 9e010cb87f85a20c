"""MONAI Decathlon-style datalists with deterministic, stable splits.

A case's split depends only on (seed, case id): adding cases never moves existing ones, and
frames of one cine (same case id) always land in the same split. Paths are stored relative to
the datalist's folder, which is what ``monai.data.load_decathlon_datalist`` expects by default.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional

from .errors import AngioDataError, read_json
from .writers import atomic_path

SPLITS = ("training", "validation", "test")


def case_fraction(case_id: str, seed: int = 0) -> float:
    """Stable pseudo-random number in [0, 1) for a case."""
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def assign_splits(case_ids: Iterable[str], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Dict[str, str]:
    """case id -> "training" | "validation" | "test".

    With three or more cases, each requested split that came out empty takes the training case
    with the smallest hash, so tiny sets still have something to validate on.
    """
    # a fraction of 1 puts every case in that split (a folder prepared as an external test set)
    if not (0 <= val_fraction <= 1 and 0 <= test_fraction <= 1 and val_fraction + test_fraction <= 1):
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1] and sum to at most 1")
    cases = sorted(set(case_ids))
    u = {c: case_fraction(c, seed) for c in cases}
    split = {c: "test" if u[c] < test_fraction else "validation" if u[c] < test_fraction + val_fraction else "training" for c in cases}
    if len(cases) >= 3:
        for name, wanted in (("test", test_fraction), ("validation", val_fraction)):
            if wanted > 0 and name not in split.values():
                training = sorted((u[c], c) for c in cases if split[c] == "training")
                if len(training) > 1:
                    split[training[0][1]] = name
    return split


def build_datalist(
    items: List[dict],
    root: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    path_keys=("image", "label"),
    splits: Optional[Dict[str, str]] = None,
) -> dict:
    """Items (dicts with a "case" id and file paths) -> {"training": [...], "validation": [...], "test": [...]}.

    Values under ``path_keys`` are made relative to ``root``. ``splits`` (case -> split name)
    overrides the hash-based assignment, e.g. for a data set's published split.
    """
    split = splits if splits is not None else assign_splits([it["case"] for it in items], val_fraction, test_fraction, seed)
    out: Dict[str, list] = {name: [] for name in SPLITS}
    for it in sorted(items, key=lambda d: (d["case"], str(d.get("image")))):
        entry = {}
        for key, value in it.items():
            if key in path_keys and isinstance(value, str):
                value = os.path.relpath(os.path.abspath(value), os.path.abspath(root))
            entry[key] = value
        out[split[it["case"]]].append(entry)
    return out


def write_datalist(path, datalist: dict, **extra) -> str:
    """Write a datalist JSON atomically (extra top-level keys, e.g. a description, allowed)."""
    doc = dict(extra)
    doc.update(datalist)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return os.fspath(path)


PATH_KEYS = ("image", "label", "label_multiclass", "guidewire", "catheter", "prior", "coarse_mask")


def read_entries(datalist: str, splits: Iterable[str], required: Iterable[str] = ("image",), allow_empty: bool = False, path_keys: Iterable[str] = PATH_KEYS) -> List[dict]:
    """The entries of ``splits`` with their file keys (``path_keys``) made absolute. An entry
    lacking a ``required`` key, a missing file or (unless ``allow_empty``) no entries at all is
    an ``AngioDataError`` naming the datalist."""
    doc = read_json(datalist, "datalist")
    root = os.path.dirname(os.path.abspath(datalist))
    path_keys = set(path_keys)
    entries = []
    for split in splits:
        for entry in doc.get(split, []):
            missing = [k for k in required if k not in entry]
            if missing:
                raise AngioDataError(datalist, f"entry {entry.get('image', entry)} has no {missing}; a datalist with {list(required)} is needed")
            entries.append({k: os.path.join(root, v) if k in path_keys and isinstance(v, str) else v for k, v in entry.items()})
    if not entries and not allow_empty:
        raise AngioDataError(datalist, f"no entries in {list(splits)}")
    return entries
