"""The comparison of the VasoMIM paper's table on our data, as a sequence of real bundle runs.

    python -m apps.compare --out runs/compare                  # full CPU-sized run (hours on 2 cores)
    python -m apps.compare --out runs/compare_quick --quick    # minutes: plumbing check only

Steps (each skipped when its output exists, so an interrupted run resumes):
  1. prepare the real sets of ../shared/data (XCAD with its few-shot split, ARCADE stenosis with
     its 200 / 100 split, 20 of the 200 training frames held out for validation, Kragujevac and
     DICOM cine frames) and a synthetic labelled set;
  2. pre-train two encoders with the VasoMIM bundle on unlabeled frames (synthetic + ARCADE +
     Kragujevac + DICOM cines; no labels): plain MAE (--plain_mae true) and VasoMIM;
  3. fine-tune with the vessel segmentation bundle: U-Net from scratch, ViT from scratch, MAE
     pre-trained, VasoMIM pre-trained; task A (vessels) trained on synthetic frames only, and on
     synthetic + the 5 XCAD few-shot frames (repeated 10x); task B (ARCADE stenosis);
  4. evaluate each on its test sets (XCAD test, synthetic test, ARCADE test), plus the Frangi
     baseline (no training) on the vessel test sets;
  5. write OUT/results.md (the table, with wall times and the exact settings) and OUT/results.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict

import fire

from apps._runner import REPO, Steps, bundle_command, classical_metrics, segmentation_metrics

SHARED = os.environ.get("ANGIOKIT_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
VASOMIM = os.path.join(REPO, "bundles", "vasomim_pretrain", "configs")
SEG = os.path.join(REPO, "bundles", "xa_vessel_seg", "configs")
MODELS = ("unet_scratch", "vit_scratch", "mae", "vasomim")
MODEL_NAMES = {"frangi": "Frangi (no training)", "unet_scratch": "U-Net from scratch", "vit_scratch": "ViT from scratch", "mae": "MAE pre-trained", "vasomim": "VasoMIM pre-trained"}


class Comparison(Steps):
    def __init__(self, out: str, quick: bool, image_size: int, pretrain_epochs: int, finetune_epochs: int, synthetic: int, width: int, depth: int, workers: int, finetune_size: int = None):
        super().__init__(out)
        self.quick = quick
        self.image_size, self.pretrain_epochs, self.finetune_epochs = image_size, pretrain_epochs, finetune_epochs
        self.finetune_size = finetune_size or image_size
        self.synthetic, self.workers = synthetic, workers
        heads = max(width // 64, 1)
        self.vit = {"preset": "vit_s16", "network_def#hidden_size": width, "network_def#num_heads": heads, "network_def#mlp_dim": 4 * width, "network_def#num_layers": depth}
        # a U-Net of about the ViT's cost on a CPU (the shipped config is twice as wide)
        self.unet_features = (16, 16, 32, 64, 128, 16) if quick or width < 384 else (32, 32, 64, 128, 256, 32)

    # ---- 1. data ------------------------------------------------------------------------------

    def prepare(self) -> None:
        from angiokit.data.adapters import prepare_arcade, prepare_dicom_frames, prepare_pairs
        from angiokit.data.synthetic import SynthConfig
        from angiokit.data.synthetic.export import write_synthetic_dataset

        data = self.path("data")
        if not os.path.exists(os.path.join(data, "synth", "datalist.json")):
            write_synthetic_dataset(os.path.join(data, "synth"), self.synthetic, SynthConfig(size=512), seed=0, workers=self.workers)
        if not os.path.exists(os.path.join(data, "xcad", "datalist.json")):
            prepare_pairs(os.path.join(SHARED, "xcad_samples", "images"), os.path.join(SHARED, "xcad_samples", "masks"), os.path.join(data, "xcad"), split="xcad_samples")
        if not os.path.exists(os.path.join(data, "arcade", "datalist.json")):
            # the fixed 200 / 100 split; the last 20 training frames validate (checkpoint choice)
            split = {"training": [str(i) for i in range(1, 181)], "validation": [str(i) for i in range(181, 201)], "test": [str(i) for i in range(201, 301)]}
            root = os.path.join(SHARED, "arcade_stenosis_test")
            prepare_arcade(os.path.join(root, "images"), os.path.join(root, "annotations", "test.json"), os.path.join(data, "arcade"), categories=["stenosis"], split=split)
        if not os.path.exists(os.path.join(data, "kragujevac", "datalist.json")):
            prepare_pairs(os.path.join(SHARED, "xa_cine_kragujevac", "images"), None, os.path.join(data, "kragujevac"))
        if not os.path.exists(os.path.join(data, "dicom_xa", "datalist.json")):
            prepare_dicom_frames(os.path.join(SHARED, "dicom_xa"), os.path.join(data, "dicom_xa"))

    def datalist(self, name: str) -> str:
        return self.path("data", name, "datalist.json")

    # ---- 2. pre-training ----------------------------------------------------------------------

    def pretrain(self, kind: str) -> str:
        root = self.path("pretrain", kind)
        unlabeled = ",".join(self.datalist(n) for n in ("synth", "arcade", "kragujevac", "dicom_xa"))
        overrides = {
            **self.vit, "datalist": unlabeled, "datalist_splits": ["training", "validation", "test"], "image_size": self.image_size,
            "max_epochs": self.pretrain_epochs, "warmup_epochs": max(1, self.pretrain_epochs // 10), "batch_size": 32, "base_lr": 0.0015,
            "num_workers": self.workers, "checkpoint_interval": max(1, self.pretrain_epochs // 2), "image_interval": max(1, self.pretrain_epochs // 2),
            "network_def#decoder_hidden_size": 128, "network_def#decoder_num_layers": 2, "network_def#decoder_num_heads": 4, "network_def#decoder_mlp_dim": 512,
        }
        if kind == "mae":
            overrides["plain_mae"] = True
        encoder = os.path.join(root, "models", "encoder.pt")
        self.run(f"pretrain_{kind}", encoder, bundle_command([os.path.join(VASOMIM, "train.json")], root, overrides))
        return encoder

    # ---- 3./4. fine-tuning and evaluation -----------------------------------------------------------

    def model_overrides(self, model: str, encoders: Dict[str, str]) -> Dict:
        if model == "unet_scratch":
            return {"network_def#features": list(self.unet_features)}
        overrides = dict(self.vit)
        if model in encoders:
            overrides["pretrained_encoder"] = encoders[model]
        return overrides

    def finetune(self, task: str, model: str, train_datalist: str, encoders: Dict[str, str]) -> str:
        root = self.path("finetune", task, model)
        configs = [os.path.join(SEG, "train.json")] + ([os.path.join(SEG, "unet.json")] if model == "unet_scratch" else [])
        overrides = {
            "datalist": train_datalist, "image_size": self.finetune_size, "max_epochs": self.finetune_epochs, "warmup_epochs": max(1, self.finetune_epochs // 10),
            "val_interval": max(1, self.finetune_epochs // 10), "batch_size": 8, "num_workers": self.workers, **self.model_overrides(model, encoders),
        }
        if model != "unet_scratch":
            overrides["lr"] = 0.001
        checkpoint = os.path.join(root, "models", "model.pt")
        self.run(f"finetune_{task}_{model}", checkpoint, bundle_command(configs, root, overrides))
        return root

    def evaluate(self, task: str, model: str, root: str, test_name: str, encoders: Dict[str, str]) -> Dict[str, float]:
        out = os.path.join(root, f"eval_{test_name}")
        configs = [os.path.join(SEG, "train.json")] + ([os.path.join(SEG, "unet.json")] if model == "unet_scratch" else []) + [os.path.join(SEG, "evaluate.json")]
        overrides = {"datalist": self.datalist(test_name), "eval_split": "test", "output_dir": out, "image_size": self.finetune_size, "num_workers": 0, **self.model_overrides(model, {})}
        self.run(f"evaluate_{task}_{model}_{test_name}", os.path.join(out, "metrics.csv"), bundle_command(configs, root, overrides))
        return segmentation_metrics(out)

    def frangi(self, test_name: str) -> Dict[str, float]:
        out = self.path("frangi", f"{test_name}.csv")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cmd = [sys.executable, "-m", "apps.classical", "--datalist", self.datalist(test_name), "--method", "frangi", "--threshold", "otsu", "--csv", out]
        self.run(f"frangi_{test_name}", out, cmd)
        return classical_metrics(out)


def main(out: str = "runs/compare", quick: bool = False, image_size: int = None, pretrain_epochs: int = None, finetune_epochs: int = None, synthetic: int = None, width: int = None, depth: int = None, workers: int = 1, finetune_size: int = None, tasks: str = None):
    """Run (or resume) the whole comparison and write OUT/results.md. ``finetune_size``
    fine-tunes at another size than pre-training (position embeddings are resized); ``tasks``
    (comma-separated names) runs a subset, e.g. ``--tasks vessels_synthetic``."""
    cfg = dict(image_size=64, pretrain_epochs=1, finetune_epochs=1, synthetic=12, width=32, depth=2) if quick else dict(image_size=160, pretrain_epochs=30, finetune_epochs=40, synthetic=240, width=192, depth=6)
    given = dict(image_size=image_size, pretrain_epochs=pretrain_epochs, finetune_epochs=finetune_epochs, synthetic=synthetic, width=width, depth=depth)
    cfg.update({k: v for k, v in given.items() if v is not None})
    cfg["finetune_size"] = finetune_size or cfg["image_size"]
    c = Comparison(out, quick, workers=workers, **cfg)
    started = time.time()
    c.prepare()
    encoders = {"mae": c.pretrain("mae"), "vasomim": c.pretrain("vasomim")}
    repeated_xcad = ",".join([c.datalist("xcad")] * 10)
    all_tasks = {
        "vessels_synthetic": (c.datalist("synth"), ["xcad", "synth"]),
        "vessels_synthetic_plus_xcad5": (c.datalist("synth") + "," + repeated_xcad, ["xcad", "synth"]),
        "stenosis_arcade": (c.datalist("arcade"), ["arcade"]),
    }
    if tasks:
        chosen = tasks.split(",") if isinstance(tasks, str) else list(tasks)
        unknown = sorted(set(chosen) - set(all_tasks))
        if unknown:
            raise ValueError(f"unknown --tasks {unknown}; expected some of {sorted(all_tasks)}")
        all_tasks = {k: all_tasks[k] for k in chosen}
    results: Dict[str, Dict] = {}
    for task, (train, tests) in all_tasks.items():
        for model in MODELS:
            root = c.finetune(task, model, train, encoders)
            for test in tests:
                results.setdefault(task, {}).setdefault(test, {})[model] = c.evaluate(task, model, root, test, encoders)
        if task.startswith("vessels"):
            for test in tests:
                results[task][test]["frangi"] = c.frangi(test)
    report = write_report(c, cfg, results, time.time() - started)
    print(report)


def write_report(c: Comparison, cfg: Dict, results: Dict, seconds: float) -> str:
    from angiokit.data.writers import atomic_path

    lines = [f"Settings: {json.dumps(cfg)}; this invocation took {seconds / 60:.1f} min (steps run now: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in c.timings.items()) + ")", ""]
    test_names = {"xcad": "XCAD test (5 real)", "synth": "synthetic test", "arcade": "ARCADE stenosis test (100 real)"}
    for task, by_test in results.items():
        lines += [f"### {task}", "", "| method | " + " | ".join(f"{test_names[t]} Dice | {test_names[t]} clDice" for t in by_test) + " |", "|---" * (1 + 2 * len(by_test)) + "|"]
        for model in ("frangi",) + MODELS:
            if not any(model in by_test[t] for t in by_test):
                continue
            cells = []
            for t in by_test:
                m = by_test[t].get(model)
                cells += [f"{m['dice']:.3f}" if m else "-", f"{m['cldice']:.3f}" if m and m.get("cldice") is not None else "-"]
            lines.append(f"| {MODEL_NAMES[model]} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    with atomic_path(c.path("results.md")) as tmp:
        open(tmp, "w").write(text)
    with atomic_path(c.path("results.json")) as tmp:
        json.dump({"settings": cfg, "results": results, "timings_s": c.timings}, open(tmp, "w"), indent=2)
    return text


if __name__ == "__main__":
    fire.Fire(main)
