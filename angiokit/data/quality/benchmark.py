"""The benchmark's files: ``write_quality_benchmark`` renders and rates cases into images/ and
scores.csv, with the settings that made them in benchmark.json (``benchmark_settings``); a
benchmark made otherwise is told apart (``benchmark_mismatch``), one that only has fewer cases
grows."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from typing import Dict, Optional

import numpy as np

from ..datalist import assign_splits
from ..errors import read_json
from ..parallel import map_cases
from ..synthetic import SynthConfig
from ..synthetic.export import sample_seed
from ..writers import atomic_path, to_uint, write_csv, write_png
from .failures import Failure
from .labels import LABEL_RULE, rate, visible_severities
from .scale import METRICS
from .scene import QualityScene, quality_config
from .scores_csv import BENCHMARK_COLUMNS


def make_case(cfg: SynthConfig, seed: int, rater_biases: np.ndarray, failure: Optional[Failure] = None) -> dict:
    """One benchmark case: images F, C, S (float [0, 1]), the failure and the ratings."""
    q = QualityScene(cfg, seed)
    failure = failure or Failure.sample(q.rng)
    images = q.render_all(failure)
    severities = visible_severities(q.damage, failure)
    return {"images": images, "failure": asdict(failure), "severities": severities, "ratings": rate(severities, q.rng, len(rater_biases), biases=rater_biases)}


def benchmark_settings(n: int, size: int, seed: int = 0, raters: int = 5, val_fraction: float = 0.15, test_fraction: float = 0.25) -> dict:
    """What makes a synthetic benchmark what it is, as its ``benchmark.json`` records it."""
    return {"cases": int(n), "size": int(size), "seed": int(seed), "raters": int(raters), "val_fraction": float(val_fraction), "test_fraction": float(test_fraction), "label_rule": LABEL_RULE}


def benchmark_mismatch(root: str, settings: dict) -> str:
    """Why the benchmark in ``root`` is not the one ``settings`` describe ('' when it is): one
    written before the settings were recorded, or with another label rule, counts as different."""
    path = os.path.join(root, "benchmark.json")
    if not os.path.isfile(path):
        return f"{path} is missing (a benchmark from before label rule {LABEL_RULE!r}, or not a synthetic one)"
    found = read_json(path, "benchmark settings")
    differ = [f"{k} {found.get(k)!r} (wanted {v!r})" for k, v in settings.items() if found.get(k) != v]
    return f"{path}: " + ", ".join(differ) if differ else ""


def _case_name(index: int) -> str:
    return f"q{index:05d}"


def _write_case(args) -> dict:
    """Render and write case ``index`` of a benchmark; its scores.csv row (split not set)."""
    out, index, cfg, seed, biases = args
    case = _case_name(index)
    result = make_case(cfg, sample_seed(seed, index), biases)
    paths = {}
    for key, suffix in (("synthetic", ""), ("fluoro", "_aux_fluoro"), ("contrast", "_aux_reference")):
        paths[key] = os.path.join("images", f"{case}{suffix}.png")
        write_png(os.path.join(out, paths[key]), to_uint(result["images"][key], 8))
    row = {"case": case, "split": "", "synthetic": paths["synthetic"], "aux_fluoro": paths["fluoro"], "aux_reference": paths["contrast"]}
    for metric in METRICS:
        r = result["ratings"][metric]
        row[f"{metric}_mos"], row[f"{metric}_std"] = f"{r['mos']:.2f}", f"{r['std']:.3f}"
        row[f"{metric}_distribution"] = ";".join(f"{p:.2f}" for p in r["distribution"])
        row[f"{metric}_severity"] = f"{result['severities'][metric]:.3f}"
    row["failure"] = json.dumps(result["failure"])
    return row


def write_quality_benchmark(out: str, n: int = 300, size: int = 256, seed: int = 0, raters: int = 5, val_fraction: float = 0.15, test_fraction: float = 0.25, progress: bool = True, workers: int = 1) -> str:
    """Write ``n`` cases: images/<case>.png (S), images/<case>_aux_fluoro.png (F),
    images/<case>_aux_reference.png (C) - the naming rule MONAI Label's quality task uses -
    scores.csv (one row per case; columns of ``read_scores_csv`` plus the failures) and
    benchmark.json (``benchmark_settings``, written last: a cache is only reused once whole).
    Cases are seeded by their index, so ``workers`` processes write the same files as one."""
    cfg = quality_config(size)
    settings = benchmark_settings(n, size, seed, raters, val_fraction, test_fraction)
    kept = _reusable_rows(out, settings)
    biases = np.random.default_rng(seed).normal(0.0, 0.3, raters)  # the same rater panel for all cases
    cases = [_case_name(i) for i in range(n)]
    jobs = [(out, i, cfg, seed, biases) for i, case in enumerate(cases) if case not in kept]
    splits = assign_splits(cases, val_fraction, test_fraction, seed)
    written = {row["case"]: row for row in map_cases(_write_case, jobs, workers, desc="quality benchmark", progress=progress, chunksize=4)}
    rows = [kept.get(case) or written[case] for case in cases]
    for row in rows:
        row["split"] = splits[row["case"]]
    path = write_csv(os.path.join(out, "scores.csv"), rows)
    with atomic_path(os.path.join(out, "benchmark.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(settings, f, indent=2)
    return path


def _reusable_rows(out: str, settings: dict) -> Dict[str, dict]:
    """case -> scores.csv row of the cases a whole benchmark already in ``out`` holds, when it was
    made with ``settings`` but another number of cases (cases are seeded by their index, so case
    i is the same in both), and their three images are there; {} otherwise. Growing a benchmark
    renders only the new cases."""
    scores = os.path.join(out, "scores.csv")
    if not os.path.isfile(scores):
        return {}
    if benchmark_mismatch(out, {k: v for k, v in settings.items() if k != "cases"}):
        return {}
    with open(scores, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != BENCHMARK_COLUMNS:  # written by another version of the writer
            return {}
        rows = {row["case"]: row for row in reader}
    return {case: row for case, row in rows.items() if all(os.path.isfile(os.path.join(out, row[k])) for k in ("synthetic", "aux_fluoro", "aux_reference"))}
