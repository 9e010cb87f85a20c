"""The CSV of scored synthetic angiograms, ours (the benchmark's scores.csv) and imported ones."""

from __future__ import annotations

import csv
import os
from typing import List

from ..errors import AngioDataError
from .scale import METRICS, level_distribution

CSV_COLUMNS = ["case", "split", "synthetic", "aux_fluoro", "aux_reference"] + [f"{m}_{k}" for m in METRICS for k in ("mos", "std", "distribution")]
# the synthetic benchmark's scores.csv: those, each metric's severity, and the failure drawn
BENCHMARK_COLUMNS = CSV_COLUMNS[:5] + [f"{m}_{k}" for m in METRICS for k in ("mos", "std", "distribution", "severity")] + ["failure"]


def read_benchmark_labels(path: str, split: str = "test") -> List[dict]:
    """The ``split`` rows of a synthetic benchmark's scores.csv as {"case", "<metric>_mos",
    "<metric>_severity"} (floats): what its labels were made from, for ceilings and analyses
    (``read_scores_csv`` keeps only what training needs)."""
    if not os.path.isfile(path):
        raise AngioDataError(path, "scores CSV not found")
    wanted = [f"{m}_{k}" for m in METRICS for k in ("mos", "severity")]
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ["case", "split"] + wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise AngioDataError(path, f"no {missing} columns: expected the synthetic benchmark's scores.csv")
        return [{"case": r["case"], **{c: float(r[c]) for c in wanted}} for r in reader if r["split"] == split]


def read_scores_csv(path: str) -> List[dict]:
    """Read scored synthetic angiograms: columns ``synthetic`` (image path), optional
    ``aux_fluoro`` / ``aux_reference`` (paths, may be empty), ``guidewire``/``branch``/``artifact``
    scores (1-5; ``<metric>_mos`` also accepted), optional ``<metric>_std``,
    ``<metric>_distribution`` ("p1;p2;p3;p4;p5"), ``split`` and ``case``. Relative paths are
    relative to the CSV's folder. Errors name the file, the row and the problem."""
    if not os.path.isfile(path):
        raise AngioDataError(path, "scores CSV not found")
    root = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "synthetic" not in reader.fieldnames:
            raise AngioDataError(path, f"CSV needs a 'synthetic' column; it has {reader.fieldnames}")
        for i, row in enumerate(reader, start=2):
            item = {"case": row.get("case") or f"row{i}", "split": row.get("split") or "", "image": _resolve(root, row["synthetic"])}
            for aux in ("aux_fluoro", "aux_reference"):
                if row.get(aux):
                    item[aux] = _resolve(root, row[aux])
            for metric in METRICS:
                raw = row.get(f"{metric}_mos") or row.get(metric)
                try:
                    mos = float(raw)
                except (TypeError, ValueError):
                    raise AngioDataError(path, f"row {i}: {metric} score {raw!r} is not a number") from None
                if not 1.0 <= mos <= 5.0:
                    raise AngioDataError(path, f"row {i}: {metric} score {mos} is outside 1-5")
                dist = row.get(f"{metric}_distribution")
                item[f"{metric}_mos"] = mos
                item[f"{metric}_std"] = float(row.get(f"{metric}_std") or 0.0)
                item[f"{metric}_distribution"] = [float(v) for v in dist.split(";")] if dist else level_distribution(mos).tolist()
            rows.append(item)
    if not rows:
        raise AngioDataError(path, "no scored rows")
    return rows


def _resolve(root: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(root, p)
