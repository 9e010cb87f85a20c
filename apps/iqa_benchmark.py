"""CAS-IQA on the synthetic CAS-style benchmark, side by side with its baselines.

    python -m apps.iqa_benchmark --out runs/iqa                  # 4,800 cases, ViT 192 x 6 at 224 px (a GPU)
    python -m apps.iqa_benchmark --out runs/iqa_3200 --cases 3200 --image_size 256 --encoder_size 128 --width 128 --depth 4 --epochs 20   # CPU size
    python -m apps.iqa_benchmark --out runs/iqa_quick --quick    # plumbing check (minutes)
    python -m apps.iqa_benchmark --out runs/iqa --models full,no_must   # some of the models

Stages (each step skipped once finished, so an interrupted run resumes):
  1. the benchmark: ``angiokit.data.quality.write_quality_benchmark`` (proxy labels; splits by case);
  2. classical baselines on the test split: BRISQUE, PIQE, blur effect (no reference), SSIM /
     PSNR against the real contrast frame C (full reference);
  3. learned models, each a run of the CAS-IQA bundle then its evaluate config: a plain ViT
     regressor (S alone, no MUST), CAS-IQA without auxiliary images, CAS-IQA without MUST (mean
     fusion), full CAS-IQA;
  4. OUT/results.md: SRCC / PLCC per metric, and OUT/results.json.
"""

from __future__ import annotations

import json
import os
import time
from typing import Dict

import fire
import numpy as np

from apps.experiment import Experiment, choose_profile, markdown_table, vit_overrides, write_json, write_text

PROFILES = {
    "quick": dict(cases=24, size=128, image_size=64, encoder_size=None, epochs=1, width=64, depth=2),
    "default": dict(cases=4800, size=256, image_size=224, encoder_size=None, epochs=40, width=192, depth=6),
}
STAGES = ("benchmark", "baselines", "models", "report")
# model: (its row in the table, the overlays on the CAS-IQA bundle's train.json that make it)
MODELS = {
    "vit_regressor": ("Plain ViT regressor (S only, no MUST)", ["vit_regressor"]),
    "no_auxiliary": ("CAS-IQA without auxiliary images", ["no_auxiliary"]),
    "no_must": ("CAS-IQA without MUST (mean fusion)", ["no_must"]),
    "full": ("CAS-IQA (S + F + C, MUST)", []),
}


def classical_baselines(scores_csv: str, split: str = "test") -> Dict[str, Dict]:
    """SRCC / PLCC of each classical score with each metric's MOS on ``split``."""
    from angiokit.data.quality import METRICS, read_scores_csv
    from angiokit.data.readers import load_frame
    from angiokit.metrics.correlation import correlation
    from angiokit.metrics.iqa_baselines import baseline_scores

    rows = [r for r in read_scores_csv(scores_csv) if r["split"] == split]
    values: Dict[str, list] = {}
    for r in rows:
        reference = load_frame(r["aux_reference"])[0] if r.get("aux_reference") else None
        for name, v in baseline_scores(load_frame(r["image"])[0], reference).items():
            values.setdefault(name, []).append(v)
    out = {}
    for name, v in values.items():
        v = np.asarray(v)
        out[name] = {kind: {m: correlation(kind, v, np.array([r[f"{m}_mos"] for r in rows])) for m in METRICS} for kind in ("srcc", "plcc")}
    return out


CEILINGS = {"severity itself, ties kept (the ceiling)": None, "severity read exactly, never tied": 0.0}


def severity_ceilings(scores_csv: str, split: str = "test") -> Dict[str, Dict[str, float]]:
    """SRCC with the MOS of the benchmark's own severities on ``split``: as they are (their ties
    kept) and as a scorer that reads them exactly but, like a learned one, never ties
    (``severity_ceiling``)."""
    from angiokit.data.quality import METRICS, read_benchmark_labels
    from angiokit.metrics.correlation import severity_ceiling

    rows = read_benchmark_labels(scores_csv, split)

    def column(name: str) -> np.ndarray:
        return np.array([r[name] for r in rows])

    return {label: {m: severity_ceiling(column(f"{m}_severity"), column(f"{m}_mos"), unseen) for m in METRICS} for label, unseen in CEILINGS.items()}


def main(out: str = "runs/iqa", quick: bool = False, cases: int = None, size: int = None, image_size: int = None, encoder_size: int = None, epochs: int = None, width: int = None, depth: int = None, workers: int = 1, pretrained_encoder: str = "", models: str = ",".join(MODELS)):
    """Run (or resume) the benchmark and write OUT/results.md; ``models``: which learned models
    (comma-separated keys of ``MODELS``); ``encoder_size``: the ViT's input size when it is to be
    smaller than ``image_size``, where the pixel residuals are compared (default the same);
    ``pretrained_encoder``: a VasoMIM encoder.pt to start from (its sizes, not ``width`` / ``depth``)."""
    from angiokit.data.quality import METRICS, benchmark_mismatch, benchmark_settings
    from angiokit.data.quality_dataset import default_benchmark

    cfg = choose_profile(PROFILES, "quick" if quick else "default", dict(cases=cases, size=size, image_size=image_size, encoder_size=encoder_size, epochs=epochs, width=width, depth=depth))
    cfg["encoder_size"] = int(cfg["encoder_size"] or cfg["image_size"])
    chosen = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    unknown = set(chosen) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {list(MODELS)}")
    exp = Experiment(out, STAGES)
    started = time.time()
    exp.stage("benchmark")
    benchmark = exp.path("benchmark")
    scores_csv = os.path.join(benchmark, "scores.csv")
    # models trained here on another benchmark (size, image size, label rule) would be reused as
    # if they matched it
    mismatch = benchmark_mismatch(benchmark, benchmark_settings(cfg["cases"], cfg["size"])) if os.path.isfile(scores_csv) else ""
    if mismatch:
        raise SystemExit(f"{out} holds another benchmark than the one asked for, and models trained on it: {mismatch}; pass the settings it was made with to reuse it, or another --out")
    default_benchmark(benchmark, n=cfg["cases"], size=cfg["size"], workers=os.cpu_count() or 1)

    exp.stage("baselines")
    baselines_file = exp.path("baselines.json")
    if not os.path.exists(baselines_file):
        t = time.time()
        write_json(baselines_file, classical_baselines(scores_csv))
        exp.timings["classical baselines"] = time.time() - t
    baselines = json.load(open(baselines_file))

    exp.stage("models")
    # sizes: the encoder's when starting from one, else a ViT of width x depth
    start = {"pretrained_encoder": os.path.abspath(pretrained_encoder)} if pretrained_encoder else vit_overrides(cfg["width"], cfg["depth"])
    train = {**start, "dataset_dir": benchmark, "image_size": cfg["image_size"], "encoder_size": cfg["encoder_size"], "num_workers": workers,
             "max_epochs": cfg["epochs"], "warmup_epochs": max(1, cfg["epochs"] // 15), "val_interval": max(1, cfg["epochs"] // 10)}
    learned = {}
    for key in chosen:
        overlays = MODELS[key][1]
        exp.train_quality(f"train_{key}", os.path.join("models", key), overlays, train)
        learned[key] = exp.evaluate_quality(f"evaluate_{key}", os.path.join("models", key), overlays, benchmark)

    exp.stage("report")
    ceilings = severity_ceilings(scores_csv)
    rows = [[name] + [r[k][m] for m in METRICS for k in ("srcc", "plcc")] for name, r in baselines.items()]
    rows += [[MODELS[key][0]] + [r[k][m] for m in METRICS for k in ("srcc", "plcc")] for key, r in learned.items()]
    rows += [[f"*{label}*"] + [x for m in METRICS for x in (f"*{r[m]:.3f}*", "")] for label, r in ceilings.items()]
    lines = [f"Settings: {json.dumps(cfg)}; test split of {scores_csv}; this invocation {(time.time() - started) / 60:.1f} min ("
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in exp.timings.items()) + ")", "",
             *markdown_table(["method"] + [f"{m} {k}" for m in METRICS for k in ("SRCC", "PLCC")], rows)]
    text = "\n".join(lines) + "\n"
    write_text(exp.path("results.md"), text)
    write_json(exp.path("results.json"), {"settings": cfg, "baselines": baselines, "learned": learned, "severity_ceilings": ceilings, "timings_s": exp.timings})
    print(text)


if __name__ == "__main__":
    fire.Fire(main)
