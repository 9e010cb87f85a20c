"""CAS-IQA on the synthetic CAS-style benchmark, side by side with its baselines.

    python -m apps.iqa_benchmark --out runs/iqa                  # 4,800 cases, ViT 192 x 6 at 224 px (a GPU)
    python -m apps.iqa_benchmark --out runs/iqa_3200 --cases 3200 --image_size 256 --encoder_size 128 --width 128 --depth 4 --epochs 20   # CPU size
    python -m apps.iqa_benchmark --out runs/iqa_quick --quick    # plumbing check (minutes)
    python -m apps.iqa_benchmark --out runs/iqa --models full,no_must   # some of the models

Steps (skipped once finished, so an interrupted run resumes):
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

from apps._runner import REPO, Steps, bundle_command

BUNDLE = os.path.join(REPO, "bundles", "cas_iqa", "configs")
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
    smaller than ``image_size``, where the pixel residuals are compared (default the same)."""
    from angiokit.data.quality import METRICS, benchmark_mismatch, benchmark_settings
    from angiokit.data.quality_dataset import default_benchmark
    from angiokit.data.writers import atomic_path

    cfg = dict(cases=24, size=128, image_size=64, epochs=1, width=32, depth=2) if quick else dict(cases=4800, size=256, image_size=224, epochs=40, width=192, depth=6)
    cfg.update({k: v for k, v in dict(cases=cases, size=size, image_size=image_size, epochs=epochs, width=width, depth=depth).items() if v is not None})
    cfg["encoder_size"] = int(encoder_size or cfg["image_size"])
    steps = Steps(out)
    started = time.time()
    scores_csv = steps.path("benchmark", "scores.csv")
    # models trained here on another benchmark (size, image size, label rule) would be reused as
    # if they matched it
    mismatch = benchmark_mismatch(steps.path("benchmark"), benchmark_settings(cfg["cases"], cfg["size"])) if os.path.isfile(scores_csv) else ""
    if mismatch:
        raise SystemExit(f"{out} holds another benchmark than the one asked for, and models trained on it: {mismatch}; pass the settings it was made with to reuse it, or another --out")
    default_benchmark(steps.path("benchmark"), n=cfg["cases"], size=cfg["size"], workers=os.cpu_count() or 1)
    baselines_file = steps.path("baselines.json")
    if not os.path.exists(baselines_file):
        t = time.time()
        with atomic_path(baselines_file) as tmp:
            json.dump(classical_baselines(scores_csv), open(tmp, "w"), indent=2)
        steps.timings["classical baselines"] = time.time() - t
    baselines = json.load(open(baselines_file))
    net = {"preset": "vit_s16", "network_def#hidden_size": cfg["width"], "network_def#num_heads": max(cfg["width"] // 64, 1), "network_def#mlp_dim": 4 * cfg["width"], "network_def#num_layers": cfg["depth"]}
    common = {**net, "dataset_dir": steps.path("benchmark"), "image_size": cfg["image_size"], "encoder_size": cfg["encoder_size"], "num_workers": workers}
    if pretrained_encoder:
        common["pretrained_encoder"] = os.path.abspath(pretrained_encoder)
    chosen = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    unknown = set(chosen) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {list(MODELS)}")
    learned = {}
    for key in chosen:
        extra = MODELS[key][1]
        root = steps.path("models", key)
        configs = [os.path.join(BUNDLE, "train.json")] + [os.path.join(BUNDLE, f"{e}.json") for e in extra]
        train = {**common, "max_epochs": cfg["epochs"], "warmup_epochs": max(1, cfg["epochs"] // 15), "val_interval": max(1, cfg["epochs"] // 10)}
        steps.run(f"train_{key}", os.path.join(root, "models", "model.pt"), bundle_command(configs, root, train))
        evaluation = os.path.join(root, "eval_test")
        steps.run(f"evaluate_{key}", os.path.join(evaluation, "correlations.json"), bundle_command(configs + [os.path.join(BUNDLE, "evaluate.json")], root, {**common, "output_dir": evaluation, "num_workers": 0}))
        learned[key] = json.load(open(os.path.join(evaluation, "correlations.json")))

    lines = [f"Settings: {json.dumps(cfg)}; test split of {steps.path('benchmark', 'scores.csv')}; this invocation {(time.time() - started) / 60:.1f} min ("
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in steps.timings.items()) + ")", "",
             "| method | " + " | ".join(f"{m} SRCC | {m} PLCC" for m in METRICS) + " |", "|---" * (1 + 2 * len(METRICS)) + "|"]
    for name, r in baselines.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['srcc'][m]:.3f} | {r['plcc'][m]:.3f}" for m in METRICS) + " |")
    for key, r in learned.items():
        lines.append(f"| {MODELS[key][0]} | " + " | ".join(f"{r['srcc'][m]:.3f} | {r['plcc'][m]:.3f}" for m in METRICS) + " |")
    ceilings = severity_ceilings(scores_csv)
    for label, r in ceilings.items():
        lines.append(f"| *{label}* | " + " | ".join(f"*{r[m]:.3f}* | " for m in METRICS) + " |")
    text = "\n".join(lines) + "\n"
    with atomic_path(steps.path("results.md")) as tmp:
        open(tmp, "w").write(text)
    with atomic_path(steps.path("results.json")) as tmp:
        json.dump({"settings": cfg, "baselines": baselines, "learned": learned, "severity_ceilings": ceilings, "timings_s": steps.timings}, open(tmp, "w"), indent=2)
    print(text)


if __name__ == "__main__":
    fire.Fire(main)
