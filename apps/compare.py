"""The comparison of the VasoMIM paper's table on our data, as a sequence of real bundle runs.

    python -m apps.compare --out runs/compare                  # full CPU-sized run (hours on 2 cores)
    python -m apps.compare --out runs/compare_quick --quick    # minutes: plumbing check only

Stages (each step skipped once it finished, so an interrupted run resumes):
  1. data: the real sets of ../shared/data (XCAD with its few-shot split, ARCADE stenosis with
     its 200 / 100 split, 20 of the 200 training frames held out for validation, Kragujevac and
     DICOM cine frames) and a synthetic labelled set;
  2. pretrain: two encoders with the VasoMIM bundle on unlabeled frames (synthetic + ARCADE +
     Kragujevac + DICOM cines; no labels): plain MAE (--plain_mae true) and VasoMIM;
  3. finetune and evaluate with the vessel segmentation bundle: U-Net from scratch, ViT from
     scratch, MAE pre-trained, VasoMIM pre-trained, and Frangi (configs/frangi.json, no training);
     task A (vessels) trained on synthetic frames only, and on synthetic + the 5 XCAD few-shot
     frames (repeated 10x); task B (ARCADE stenosis); every method is scored on its task's test
     sets by the same evaluate config, which reads the network from the checkpoint;
  4. report: OUT/results.md (the table, with wall times and the exact settings) and OUT/results.json.
"""

from __future__ import annotations

import json
import os
import time
from typing import Dict

import fire

from apps.experiment import SHARED, SMALL_DECODER, Experiment, choose_profile, frames_set, labelled_set, markdown_table, synthetic_set, vit_overrides, warmup, write_json, write_text

PROFILES = {
    "quick": dict(image_size=64, pretrain_epochs=1, finetune_epochs=1, synthetic=12, width=64, depth=2, finetune_size=None),
    "default": dict(image_size=160, pretrain_epochs=30, finetune_epochs=40, synthetic=240, width=192, depth=6, finetune_size=None),
}
STAGES = ("data", "pretrain", "finetune", "report")
# method: (segmentation method of the bundle, the encoder it starts from)
MODELS = {"unet_scratch": ("unet", None), "vit_scratch": ("vit", None), "mae": ("vit", "mae"), "vasomim": ("vit", "vasomim")}
MODEL_NAMES = {"frangi": "Frangi (no training)", "unet_scratch": "U-Net from scratch", "vit_scratch": "ViT from scratch", "mae": "MAE pre-trained", "vasomim": "VasoMIM pre-trained"}
TEST_NAMES = {"xcad": "XCAD test (5 real)", "synth": "synthetic test", "arcade": "ARCADE stenosis test (100 real)"}


def prepare_data(exp: Experiment, cfg: Dict, workers: int) -> Dict[str, str]:
    from angiokit.data.adapters import prepare_arcade

    arcade = exp.path("data", "arcade", "datalist.json")
    if not os.path.exists(arcade):
        # the fixed 200 / 100 split; the last 20 training frames validate (checkpoint choice)
        split = {"training": [str(i) for i in range(1, 181)], "validation": [str(i) for i in range(181, 201)], "test": [str(i) for i in range(201, 301)]}
        root = os.path.join(SHARED, "arcade_stenosis_test")
        prepare_arcade(os.path.join(root, "images"), os.path.join(root, "annotations", "test.json"), os.path.dirname(arcade), categories=["stenosis"], split=split)
    return {
        "synth": synthetic_set(exp.path("data", "synth"), cfg["synthetic"], 512, workers),
        "xcad": labelled_set(os.path.join(SHARED, "xcad_samples"), exp.path("data", "xcad")),
        "arcade": arcade,
        "kragujevac": frames_set(os.path.join(SHARED, "xa_cine_kragujevac", "images"), exp.path("data", "kragujevac"), held_out=True),
        "dicom_xa": frames_set(os.path.join(SHARED, "dicom_xa"), exp.path("data", "dicom_xa"), held_out=True),
    }


def pretrain(exp: Experiment, cfg: Dict, lists: Dict[str, str], kind: str, workers: int) -> str:
    epochs = cfg["pretrain_epochs"]
    overrides = {
        **vit_overrides(cfg["width"], cfg["depth"]), **SMALL_DECODER, "image_size": cfg["image_size"],
        "datalist": ",".join(lists[n] for n in ("synth", "arcade", "kragujevac", "dicom_xa")), "datalist_splits": ["training", "validation", "test"],
        "max_epochs": epochs, "warmup_epochs": warmup(epochs), "batch_size": 32, "base_lr": 0.0015, "num_workers": workers,
        "checkpoint_interval": max(1, epochs // 2), "image_interval": max(1, epochs // 2), **({"plain_mae": True} if kind == "mae" else {}),
    }
    return exp.pretrain(f"pretrain_{kind}", os.path.join("pretrain", kind), overrides)


def finetune(exp: Experiment, cfg: Dict, task: str, model: str, train_datalist: str, encoders: Dict[str, str], workers: int) -> str:
    method, encoder = MODELS[model]
    epochs = cfg["finetune_epochs"]
    overrides = {"datalist": train_datalist, "image_size": cfg["finetune_size"] or cfg["image_size"], "max_epochs": epochs, "warmup_epochs": warmup(epochs),
                 "val_interval": warmup(epochs), "batch_size": 8, "num_workers": workers}
    if method == "unet":
        # a U-Net of about the ViT's cost on a CPU (the shipped config is twice as wide)
        overrides["network_def#features"] = [16, 16, 32, 64, 128, 16] if cfg["width"] < 384 else [32, 32, 64, 128, 256, 32]
    elif encoder:
        overrides.update(pretrained_encoder=encoders[encoder], lr=0.001)  # sizes: the encoder's
    else:
        overrides.update(vit_overrides(cfg["width"], cfg["depth"]), lr=0.001)
    root = os.path.join("finetune", task, model)
    exp.train_segmenter(f"finetune_{task}_{model}", root, method, overrides)
    return root


def main(out: str = "runs/compare", quick: bool = False, image_size: int = None, pretrain_epochs: int = None, finetune_epochs: int = None, synthetic: int = None, width: int = None, depth: int = None, workers: int = 1, finetune_size: int = None, tasks: str = None):
    """Run (or resume) the whole comparison and write OUT/results.md. ``finetune_size``
    fine-tunes at another size than pre-training (position embeddings are resized); ``tasks``
    (comma-separated names) runs a subset, e.g. ``--tasks vessels_synthetic``."""
    given = dict(image_size=image_size, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs, synthetic=synthetic, width=width, depth=depth, finetune_size=finetune_size)
    cfg = choose_profile(PROFILES, "quick" if quick else "default", given)
    cfg["finetune_size"] = cfg["finetune_size"] or cfg["image_size"]
    exp = Experiment(out, STAGES)
    started = time.time()
    exp.stage("data")
    lists = prepare_data(exp, cfg, workers)
    all_tasks = {
        "vessels_synthetic": (lists["synth"], ["xcad", "synth"]),
        "vessels_synthetic_plus_xcad5": (lists["synth"] + "," + ",".join([lists["xcad"]] * 10), ["xcad", "synth"]),
        "stenosis_arcade": (lists["arcade"], ["arcade"]),
    }
    chosen = tasks.split(",") if isinstance(tasks, str) else list(tasks or all_tasks)
    unknown = sorted(set(chosen) - set(all_tasks))
    if unknown:
        raise ValueError(f"unknown --tasks {unknown}; expected some of {sorted(all_tasks)}")
    exp.stage("pretrain")
    encoders = {kind: pretrain(exp, cfg, lists, kind, workers) for kind in ("mae", "vasomim")}
    exp.stage("finetune")
    results: Dict[str, Dict] = {}
    for task in chosen:
        train, tests = all_tasks[task]
        for model in MODELS:
            root = finetune(exp, cfg, task, model, train, encoders, workers)
            for test in tests:
                results.setdefault(task, {}).setdefault(test, {})[model] = exp.evaluate_segmenter(f"evaluate_{task}_{model}_{test}", root, MODELS[model][0], lists[test], test)
        if task.startswith("vessels"):
            exp.train_segmenter("frangi", "frangi", "frangi", {})  # no training: writes its model.pt
            for test in tests:
                results[task][test]["frangi"] = exp.evaluate_segmenter(f"evaluate_frangi_{test}", "frangi", "frangi", lists[test], test)
    exp.stage("report")
    print(write_report(exp, cfg, results, time.time() - started))


def write_report(exp: Experiment, cfg: Dict, results: Dict, seconds: float) -> str:
    lines = [f"Settings: {json.dumps(cfg)}; this invocation took {seconds / 60:.1f} min (steps run now: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in exp.timings.items()) + ")", ""]
    for task, by_test in results.items():
        header = ["method"] + [f"{TEST_NAMES[t]} {m}" for t in by_test for m in ("Dice", "clDice")]
        rows = [[MODEL_NAMES[model]] + [by_test[t].get(model, {}).get(m) for t in by_test for m in ("dice", "cldice")]
                for model in ("frangi",) + tuple(MODELS) if any(model in by_test[t] for t in by_test)]
        lines += [f"### {task}", "", *markdown_table(header, rows), ""]
    text = "\n".join(lines)
    write_text(exp.path("results.md"), text)
    write_json(exp.path("results.json"), {"settings": cfg, "results": results, "timings_s": exp.timings})
    return text


if __name__ == "__main__":
    fire.Fire(main)
