"""The main job: the whole system on this machine, from nothing, in one command.

    python -m apps.demo                       # about 15 minutes on a 2-core CPU; uses a GPU if present
    python -m apps.demo --quick               # under 3 minutes: every stage, tiny sizes
    python -m apps.demo --labeled ../shared/data/xcad_samples --unlabeled ../shared/data/xa_cine_kragujevac/images

Stages, each a real run of a shipped bundle (``python -m monai.bundle run`` on its configs with
size overrides) and skipped when it finished before (``--fresh`` starts over):
  1. data: a synthetic labelled set (``apps.synth``'s engine), plus ``--unlabeled`` frames for
     pre-training and a ``--labeled`` real set (images/ + masks/, its packaged or random split);
  2. VasoMIM pre-training of a small ViT on the unlabeled pool (synthetic training and validation
     frames, never their test split, and ``--unlabeled``);
  3. fine-tuning the vessel segmenter from that encoder (synthetic training frames, plus the real
     training frames when ``--labeled``);
  4. Dice / clDice on the synthetic test split (and the real test split), beside the Frangi
     baseline;
  5. CAS-IQA on the synthetic quality benchmark: train (encoder from stage 2), evaluate;
  6. OUT/report.md with the tables and figures (reconstructions, segmentation overlays, IQA
     scatter plots, loss curves).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from typing import Dict, Optional

import fire

from apps._runner import REPO, Steps, bundle_command, classical_metrics, segmentation_metrics

CONFIGS = {name: os.path.join(REPO, "bundles", name, "configs") for name in ("vasomim_pretrain", "xa_vessel_seg", "cas_iqa")}

# sizes per profile: the shipped configs stay ViT-B/16 at 224 px; the demo overrides sizes only
PROFILES = {
    "quick": dict(synthetic=24, synth_size=128, image_size=64, width=64, depth=2, pretrain_epochs=2, finetune_epochs=2, iqa_cases=24, iqa_size=128, iqa_epochs=2, batch_size=8),
    "default": dict(synthetic=160, synth_size=256, image_size=128, width=128, depth=4, pretrain_epochs=60, finetune_epochs=20, iqa_cases=120, iqa_size=128, iqa_epochs=30, batch_size=16),
}
STAGES = ("data", "pretrain", "finetune", "evaluate", "quality", "report")


class Demo(Steps):
    def __init__(self, out: str, cfg: Dict, workers: int):
        super().__init__(out)
        self.cfg, self.workers = cfg, workers
        width = cfg["width"]
        self.vit = {"preset": "vit_s16", "image_size": cfg["image_size"], "network_def#hidden_size": width, "network_def#num_heads": max(width // 64, 1), "network_def#mlp_dim": 4 * width, "network_def#num_layers": cfg["depth"]}

    def stage(self, name: str) -> None:
        print(f"\n=== [{STAGES.index(name) + 1}/{len(STAGES)}] {name} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    # ---- 1. data ----------------------------------------------------------------------------

    def data(self, unlabeled: Optional[str], labeled: Optional[str], labeled_split: Optional[str]) -> Dict[str, str]:
        from angiokit.data.adapters import prepare_dicom_frames, prepare_pairs
        from angiokit.data.synthetic import SynthConfig
        from angiokit.data.synthetic.export import write_synthetic_dataset

        lists = {"synth": self.path("data", "synth", "datalist.json")}
        if not os.path.exists(lists["synth"]):
            write_synthetic_dataset(self.path("data", "synth"), self.cfg["synthetic"], SynthConfig(size=self.cfg["synth_size"]), seed=0, workers=self.workers)
        if unlabeled:
            lists["unlabeled"] = self.path("data", "unlabeled", "datalist.json")
            if not os.path.exists(lists["unlabeled"]):
                has_dicom = any(f.lower().endswith(".dcm") for f in os.listdir(unlabeled))
                # all of it is pre-training material: no validation or test split of its own
                if has_dicom:
                    prepare_dicom_frames(unlabeled, self.path("data", "unlabeled"), val_fraction=0.0, test_fraction=0.0)
                else:
                    prepare_pairs(unlabeled, None, self.path("data", "unlabeled"), val_fraction=0.0, test_fraction=0.0)
        if labeled:
            lists["labeled"] = self.path("data", "labeled", "datalist.json")
            if not os.path.exists(lists["labeled"]):
                split = labeled_split or _packaged_split(labeled)
                prepare_pairs(os.path.join(labeled, "images"), os.path.join(labeled, "masks"), self.path("data", "labeled"), split=split)
        return lists

    # ---- 2.-5. bundle runs --------------------------------------------------------------------

    def pretrain(self, lists: Dict[str, str]) -> str:
        root = self.path("pretrain")
        epochs = self.cfg["pretrain_epochs"]
        pool = ",".join(lists[k] for k in ("synth", "unlabeled") if k in lists)
        overrides = {
            **self.vit, "datalist": pool, "datalist_splits": ["training", "validation"], "max_epochs": epochs, "warmup_epochs": max(1, epochs // 10),
            "batch_size": 2 * self.cfg["batch_size"], "base_lr": 0.0015, "num_workers": self.workers, "checkpoint_interval": epochs, "image_interval": max(1, epochs // 2),
            "network_def#decoder_hidden_size": 128, "network_def#decoder_num_layers": 2, "network_def#decoder_num_heads": 4, "network_def#decoder_mlp_dim": 512,
        }
        encoder = os.path.join(root, "models", "encoder.pt")
        self.run("pretrain_vasomim", encoder, bundle_command([os.path.join(CONFIGS["vasomim_pretrain"], "train.json")], root, overrides))
        return encoder

    def finetune(self, lists: Dict[str, str], encoder: str) -> str:
        root = self.path("segmentation")
        epochs = self.cfg["finetune_epochs"]
        # the few real labelled frames count ten times, so they are not drowned by synthetic ones
        train = ",".join([lists["synth"]] + [lists["labeled"]] * 10 if "labeled" in lists else [lists["synth"]])
        overrides = {
            **self.vit, "datalist": train, "pretrained_encoder": encoder, "max_epochs": epochs, "warmup_epochs": max(1, epochs // 10), "val_interval": max(1, epochs // 4),
            "batch_size": self.cfg["batch_size"], "num_workers": self.workers, "lr": 0.001,
        }
        self.run("finetune_vessel_seg", os.path.join(root, "models", "model.pt"), bundle_command([os.path.join(CONFIGS["xa_vessel_seg"], "train.json")], root, overrides))
        return root

    def evaluate(self, root: str, name: str, datalist: str) -> Dict[str, float]:
        out = os.path.join(root, f"eval_{name}")
        configs = [os.path.join(CONFIGS["xa_vessel_seg"], c) for c in ("train.json", "evaluate.json")]
        self.run(f"evaluate_vessel_seg_{name}", os.path.join(out, "metrics.csv"), bundle_command(configs, root, {**self.vit, "datalist": datalist, "eval_split": "test", "output_dir": out, "num_workers": 0}))
        frangi = self.path("frangi", f"{name}.csv")
        os.makedirs(os.path.dirname(frangi), exist_ok=True)
        self.run(f"frangi_{name}", frangi, [sys.executable, "-m", "apps.classical", "--datalist", datalist, "--eval_split", "test", "--method", "frangi", "--threshold", "otsu", "--csv", frangi])
        return {"model": segmentation_metrics(out), "frangi": classical_metrics(frangi), "overlays": sorted(glob.glob(os.path.join(out, "overlays", "*.png")))}

    def quality(self, encoder: str) -> Dict:
        from angiokit.data.quality_dataset import default_benchmark

        benchmark = self.path("quality", "benchmark")
        default_benchmark(benchmark, n=self.cfg["iqa_cases"], size=self.cfg["iqa_size"])
        root = self.path("quality", "cas_iqa")
        epochs = self.cfg["iqa_epochs"]
        common = {**self.vit, "dataset_dir": benchmark, "pretrained_encoder": encoder}
        train = {**common, "max_epochs": epochs, "warmup_epochs": max(1, epochs // 10), "val_interval": max(1, epochs // 4), "batch_size": self.cfg["batch_size"], "num_workers": self.workers}
        configs = [os.path.join(CONFIGS["cas_iqa"], "train.json")]
        self.run("train_cas_iqa", os.path.join(root, "models", "model.pt"), bundle_command(configs, root, train))
        out = os.path.join(root, "eval_test")
        self.run("evaluate_cas_iqa", os.path.join(out, "correlations.json"), bundle_command(configs + [os.path.join(CONFIGS["cas_iqa"], "evaluate.json")], root, {**common, "output_dir": out, "num_workers": 0}))
        return {"correlations": json.load(open(os.path.join(out, "correlations.json"))), "scatter": os.path.join(out, "scatter.png")}


def _packaged_split(folder: str) -> Optional[str]:
    """The fixed split packaged for a known set (e.g. xcad_samples), else None (random split)."""
    from importlib import resources

    name = os.path.basename(os.path.normpath(folder))
    return name if resources.files("angiokit.data.splits").joinpath(f"{name}.json").is_file() else None


def main(out: str = "runs/demo", quick: bool = False, fresh: bool = False, unlabeled: Optional[str] = None, labeled: Optional[str] = None, labeled_split: Optional[str] = None, workers: int = 1, **sizes) -> str:
    """Run (or resume) the demo; returns the path of OUT/report.md. Any size of the profile can
    be overridden, e.g. ``--pretrain_epochs 40``."""
    from angiokit.data.writers import atomic_path
    from apps.demo_report import write_report

    cfg = dict(PROFILES["quick" if quick else "default"])
    unknown = sorted(set(sizes) - set(cfg))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; sizes are {sorted(cfg)}")
    cfg.update(sizes)
    for name, folder in (("--unlabeled", unlabeled), ("--labeled", labeled)):
        if folder and not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: {name} must be a folder ({'frames or XA DICOMs' if name == '--unlabeled' else 'with images/ and masks/'})")
    if fresh and os.path.isdir(out):
        shutil.rmtree(out)
    demo = Demo(out, cfg, workers)
    # finished stages are reused only by a run of the same sizes and data
    settings = {"sizes": cfg, "unlabeled": unlabeled and os.path.abspath(unlabeled), "labeled": labeled and os.path.abspath(labeled), "labeled_split": labeled_split}
    settings_file = demo.path("settings.json")
    if os.path.exists(settings_file) and json.load(open(settings_file)) != settings:
        raise ValueError(f"{out} holds a run with other sizes or data ({settings_file}); use --fresh or another --out")
    os.makedirs(demo.out, exist_ok=True)
    with atomic_path(settings_file) as tmp, open(tmp, "w") as f:
        json.dump(settings, f, indent=2)

    import torch

    device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"angiokit demo -> {demo.out} on {device}; sizes {json.dumps(cfg)}", flush=True)
    started = time.time()
    demo.stage("data")
    lists = demo.data(unlabeled, labeled, labeled_split)
    demo.stage("pretrain")
    encoder = demo.pretrain(lists)
    demo.stage("finetune")
    seg_root = demo.finetune(lists, encoder)
    demo.stage("evaluate")
    segmentation = {name: demo.evaluate(seg_root, name, lists[name]) for name in ("synth", "labeled") if name in lists}
    demo.stage("quality")
    quality = demo.quality(encoder)
    demo.stage("report")
    report = write_report(demo, device, segmentation, quality, time.time() - started)
    print(f"\nreport: {report}", flush=True)
    return report


if __name__ == "__main__":
    fire.Fire(main)
