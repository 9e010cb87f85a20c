"""Learning from real labels (docs/results.md, "Real labels"): DCA1 vessels, ARCADE-S stenosis and
the cross-dataset checks, as a sequence of real bundle runs.

    python -m apps.real_labels --out runs/real_labels                 # CPU-sized run (about 2 h on 2 cores)
    python -m apps.real_labels --out runs/real_labels_quick --quick   # minutes: plumbing check only
    python -m apps.real_labels --out runs/real_labels --tasks dca1,cross   # a subset of the stages

Stages (each step skipped once it finished, so an interrupted run resumes):
  1. data: DCA1 (packaged split: 35 train / 5 validation of the 40 tr_*, 40 te_* test), the 10 XCAD
     frames (all test: no XCAD training), ARCADE-S (920 / 80 of the 1,000 train, 300 test) and the
     pre-training pools: every unlabelled real frame of ../shared/data (ARCADE train and test
     pixels, Kragujevac cine frames, ADSD frames, the frames of the DICOM XA cines; never a DCA1
     or XCAD frame) plus synthetic frames; ``pools.json`` says which pixels each pool held;
  2. pretrain: plain MAE and VasoMIM encoders on the pools (the VasoMIM bundle);
  3. dca1: U-Net (MONAI BasicUNet), DynUNet (nnU-Net-style), ViT from scratch, MAE- and
     VasoMIM-pretrained ViTs with the UNETR decoder, the VasoMIM ViT with the CheXWorld UNet
     adapter (equal encoder and epochs), and Frangi + Otsu; all scored on the 40 test frames;
  4. cross: the DCA1 models on the 10 XCAD frames, and models trained on synthetic frames only
     (U-Net, VasoMIM ViT) on the DCA1 test frames;
  5. arcade_s: U-Net, ViT from scratch, MAE and VasoMIM on ARCADE-S (binary stenosis), Dice and
     the challenge's F1 on the 300 test frames;
  6. report: OUT/results.md (mean +- sd over test frames, paired bootstrap intervals of the
     differences claimed), OUT/results.json, OUT/figures/*.png (per-frame overlays).
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import fire
import numpy as np

from apps.experiment import SHARED, SMALL_DECODER, Experiment, choose_profile, evaluation_dir, frames_set, markdown_table, read_per_image, synthetic_set, vit_overrides, warmup, write_json, write_text

PROFILES = {
    "quick": dict(pretrain_size=32, finetune_size=64, pretrain_epochs=1, finetune_epochs=1, arcade_epochs=1, synthetic_epochs=1, synthetic=6, width=64, depth=2, frames=3, batch_size=2, pretrain_batch_size=4),
    "default": dict(pretrain_size=128, finetune_size=256, pretrain_epochs=30, finetune_epochs=60, arcade_epochs=2, synthetic_epochs=8, synthetic=160, width=192, depth=6, frames=None, batch_size=2, pretrain_batch_size=32),
}
STAGES = ("data", "pretrain", "dca1", "cross", "arcade_s", "report")
TASKS = ("dca1", "cross", "arcade_s")
# model: (segmentation method of the bundle, the encoder it starts from, extra overrides)
MODELS: Dict[str, Tuple[str, Optional[str], Dict]] = {
    "unet": ("unet", None, {}),
    "dynunet": ("dynunet", None, {}),
    "vit_scratch": ("vit", None, {}),
    "mae": ("vit", "mae", {}),
    "vasomim": ("vit", "vasomim", {}),
    "vasomim_adapter": ("vit", "vasomim", {"decoder": "unet_adapter"}),
}
ARCADE_MODELS = ("unet", "vasomim", "vit_scratch", "mae")  # most telling first: a run cut short still has them
SYNTHETIC_MODELS = ("unet", "vasomim")
NAMES = {
    "frangi": "Frangi + Otsu (no training)", "unet": "U-Net (MONAI BasicUNet) from scratch", "dynunet": "DynUNet (nnU-Net-style) from scratch",
    "vit_scratch": "ViT + UNETR from scratch", "mae": "ViT + UNETR, MAE-pretrained", "vasomim": "ViT + UNETR, VasoMIM-pretrained",
    "vasomim_adapter": "ViT + UNet adapter, VasoMIM-pretrained",
}
# (a, b): the differences a - b the report gives an interval for, where both were run
DCA1_PAIRS = (("unet", "frangi"), ("vasomim", "vit_scratch"), ("vasomim", "mae"), ("vasomim_adapter", "vasomim"), ("dynunet", "unet"), ("vasomim", "unet"))
ARCADE_PAIRS = (("vasomim", "vit_scratch"), ("vasomim", "mae"), ("vasomim", "unet"))
XCAD_PAIRS = (("unet", "frangi"), ("vasomim", "unet"))


# ---- data ------------------------------------------------------------------------------------


def subset(datalist: str, n: Optional[int], out: str) -> str:
    """The first ``n`` items of each split of ``datalist`` as a new datalist (the quick form);
    ``datalist`` itself when ``n`` is None."""
    if not n:
        return datalist
    if not os.path.exists(out):
        base = os.path.dirname(os.path.abspath(datalist))
        doc = json.load(open(datalist))
        absolute = lambda item: {k: (os.path.join(base, v) if isinstance(v, str) and not os.path.isabs(v) and k in ("image", "label") else v) for k, v in item.items()}
        write_json(out, {k: [absolute(i) for i in v[:n]] if isinstance(v, list) else v for k, v in doc.items()})
    return out


def sample_folder(source: str, n: Optional[int], folder: str) -> str:
    """``source`` itself, or (the quick form) a folder linking its first ``n`` frame files (one
    file where they are DICOM cines: a cine holds many frames)."""
    if not n:
        return source
    if not os.path.isdir(folder):
        files = sorted(f for f in os.listdir(source) if f.lower().endswith((".png", ".jpg", ".jpeg", ".dcm")))
        files = files[:1] if files and files[0].lower().endswith(".dcm") else files[:n]
        os.makedirs(folder + ".tmp", exist_ok=True)
        for f in files:
            os.symlink(os.path.join(os.path.abspath(source), f), os.path.join(folder + ".tmp", f))
        os.rename(folder + ".tmp", folder)
    return folder


def pixels_of(datalist: str) -> Dict[str, object]:
    """Frames, pixels and frame sizes of every split of a datalist."""
    from PIL import Image

    base = os.path.dirname(os.path.abspath(datalist))
    sizes: Dict[str, int] = {}
    frames = pixels = 0
    for items in json.load(open(datalist)).values():
        for item in items if isinstance(items, list) else []:
            path = item["image"] if os.path.isabs(item["image"]) else os.path.join(base, item["image"])
            with Image.open(path) as im:
                w, h = im.size
            frames, pixels = frames + 1, pixels + w * h
            sizes[f"{w}x{h}"] = sizes.get(f"{w}x{h}", 0) + 1
    return {"frames": frames, "megapixels": round(pixels / 1e6, 1), "sizes": sizes}


def prepare_data(exp: Experiment, cfg: Dict, tasks: Sequence[str], workers: int) -> Dict[str, str]:
    from angiokit.data.adapters import prepare_arcade_s, prepare_dca1, prepare_pairs

    n = cfg["frames"]
    lists: Dict[str, str] = {}
    dca1 = exp.path("data", "dca1", "datalist.json")
    if not os.path.exists(dca1):
        prepare_dca1(os.path.join(SHARED, "dca1"), os.path.dirname(dca1), progress=False)
    lists["dca1"] = subset(dca1, n, exp.path("data", "dca1_subset.json"))
    xcad = exp.path("data", "xcad_all", "datalist.json")
    if not os.path.exists(xcad):
        stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(SHARED, "xcad_samples", "images")))
        prepare_pairs(os.path.join(SHARED, "xcad_samples", "images"), os.path.join(SHARED, "xcad_samples", "masks"), os.path.dirname(xcad), split={"training": [], "validation": [], "test": stems}, progress=False)
    lists["xcad"] = subset(xcad, n, exp.path("data", "xcad_subset.json"))
    lists["synth"] = synthetic_set(exp.path("data", "synth"), cfg["synthetic"], 512, workers)
    if "arcade_s" in tasks:
        arcade = exp.path("data", "arcade_s", "datalist.json")
        if not os.path.exists(arcade):
            prepare_arcade_s(os.path.join(SHARED, "arcade_stenosis_train"), os.path.join(SHARED, "arcade_stenosis_test"), os.path.dirname(arcade), progress=False)
        lists["arcade_s"] = subset(arcade, n, exp.path("data", "arcade_s_subset.json"))
    pools = {
        "arcade_train_pixels": os.path.join(SHARED, "arcade_stenosis_train", "images"),
        "arcade_test_pixels": os.path.join(SHARED, "arcade_stenosis_test", "images"),
        "kragujevac": os.path.join(SHARED, "xa_cine_kragujevac", "images"),
        "adsd": os.path.join(SHARED, "adsd_stenosis_samples", "images"),
        "dicom_xa": os.path.join(SHARED, "dicom_xa"),
    }
    for name, source in pools.items():
        lists[f"pool_{name}"] = frames_set(sample_folder(source, n, exp.path("data", "pools", f"{name}_sample")), exp.path("data", "pools", name))
    lists["pool_synthetic"] = lists["synth"]
    if not os.path.exists(exp.path("pools.json")):
        write_json(exp.path("pools.json"), {name[5:]: {"source": pools.get(name[5:], "apps.synth (seed 0, 512 px)"), **pixels_of(path)} for name, path in lists.items() if name.startswith("pool_")})
    return lists


# ---- runs ------------------------------------------------------------------------------------


def pretrain(exp: Experiment, cfg: Dict, lists: Mapping[str, str], kind: str, workers: int) -> str:
    epochs = cfg["pretrain_epochs"]
    overrides = {
        **vit_overrides(cfg["width"], cfg["depth"]), **SMALL_DECODER, "image_size": cfg["pretrain_size"],
        "datalist": ",".join(v for k, v in lists.items() if k.startswith("pool_")), "datalist_splits": ["training", "validation", "test"],
        "max_epochs": epochs, "warmup_epochs": warmup(epochs), "batch_size": cfg["pretrain_batch_size"], "base_lr": 0.0015, "num_workers": workers,
        "checkpoint_interval": max(1, epochs // 2), "image_interval": max(1, epochs // 2), **({"plain_mae": True} if kind == "mae" else {}),
    }
    return exp.pretrain(f"pretrain_{kind}", os.path.join("pretrain", kind), overrides)


def finetune(exp: Experiment, cfg: Dict, task: str, model: str, datalist: str, epochs: int, encoders: Mapping[str, str], workers: int, overlays: Sequence[str] = ()) -> str:
    """Train ``model`` on ``datalist`` (its training split; validation chooses the checkpoint);
    the run's folder. CPU sizes: the CNNs at half their shipped width, the ViT's adapter with
    C = 16 (CheXWorld's 32 costs five times more at 256 px)."""
    method, encoder, extra = MODELS[model]
    overrides = {"datalist": datalist, "image_size": cfg["finetune_size"], "max_epochs": epochs, "warmup_epochs": warmup(epochs),
                 "val_interval": warmup(epochs), "batch_size": cfg["batch_size"], "num_workers": workers, **extra}
    # learning rates: what the shipped configs give at their batch of 16, not scaled down to the
    # small CPU batch (1/8 of it would leave a few hundred steps at a tiny rate); DynUNet keeps nnU-Net's 0.01
    if method == "unet":
        overrides.update({"network_def#features": [16, 16, 32, 64, 128, 16], "lr": 0.001})
    elif method == "dynunet":
        overrides["network_def#filters"] = [16, 32, 64, 128, 256, 256]
    else:
        overrides["lr"] = 0.0005
        overrides.update({"pretrained_encoder": encoders[encoder]} if encoder else vit_overrides(cfg["width"], cfg["depth"]))
        if extra.get("decoder") == "unet_adapter":
            overrides["network_def#feature_size"] = 16
    root = os.path.join(task, model)
    configs = ["train"] + ([method] if method in ("unet", "dynunet") else []) + list(overlays)
    exp.bundle(f"train_{task}_{model}", "xa_vessel_seg", configs, root, overrides, os.path.join("models", "model.pt"))
    return root


def evaluate(exp: Experiment, task: str, model: str, root: str, datalist: str, test: str, overlays: Sequence[str] = (), metrics: Sequence[str] = ("val_mean_dice", "val_cldice")) -> Dict[str, Dict[str, float]]:
    """The evaluate config on the test split of ``datalist``; {metric: {frame file name: value}}."""
    method = MODELS[model][0] if model in MODELS else model
    configs = ["train"] + ([method] if method in ("unet", "dynunet", "frangi") else []) + list(overlays) + ["evaluate"]
    out = evaluation_dir(exp.path(root), test)
    exp.bundle(f"evaluate_{task}_{model}_{test}", "xa_vessel_seg", configs, root, {"datalist": datalist, "output_dir": out, "num_workers": 0}, os.path.join(out, "metrics.csv"))
    return {m: {os.path.basename(frame): v for frame, v in read_per_image(out, m).items()} for m in metrics}


def frangi(exp: Experiment) -> str:
    exp.bundle("frangi", "xa_vessel_seg", ["train", "frangi"], "frangi", {}, os.path.join("models", "model.pt"))
    return "frangi"


# ---- report ----------------------------------------------------------------------------------


def mean_sd(values: Mapping[str, float]) -> str:
    v = np.array(list(values.values()), dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def table(scores: Mapping[str, Dict[str, Dict[str, float]]], metrics: Sequence[Tuple[str, str]]) -> List[str]:
    header = ["method", "n"] + [label for _, label in metrics]
    rows = [[NAMES[m], len(next(iter(s.values())))] + [mean_sd(s[k]) for k, _ in metrics] for m, s in scores.items()]
    return markdown_table(header, rows)


def intervals(scores: Mapping[str, Dict[str, Dict[str, float]]], pairs: Sequence[Tuple[str, str]], metric: str, label: str) -> List[str]:
    from angiokit.metrics import paired_difference

    rows = []
    for a, b in pairs:
        if a in scores and b in scores:
            d = paired_difference(scores[a][metric], scores[b][metric])
            rows.append([f"{NAMES[a]} − {NAMES[b]}", d["n"], f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"])
    return markdown_table(["difference", "frames", f"{label}: mean [95 % paired bootstrap interval]"], rows) if rows else []


def overlay_figure(exp: Experiment, roots: Mapping[str, str], test: str, frames: int, path: str, titles: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """A grid of the evaluate config's per-frame error overlays: a row per method, ``frames``
    test frames (the same ones for every method). ``titles``: method -> row title (this
    module's NAMES by default)."""
    titles = NAMES if titles is None else titles
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    found = {m: sorted(glob.glob(os.path.join(evaluation_dir(exp.path(r), test), "overlays", "*_overlay.png"))) for m, r in roots.items()}
    found = {m: f for m, f in found.items() if f}
    if not found:
        return None
    names = sorted(set.intersection(*(set(os.path.basename(p) for p in f) for f in found.values())))[:frames]
    width, height = Image.open(next(iter(found.values()))[0]).size
    tile = 4.2  # inches per overlay (frame, ground truth, errors side by side)
    fig, axes = plt.subplots(len(found), len(names), figsize=(tile * len(names), (tile * height / width + 0.3) * len(found)), squeeze=False)
    for row, (model, files) in enumerate(found.items()):
        for col, name in enumerate(names):
            ax = axes[row][col]
            ax.imshow(Image.open(os.path.join(os.path.dirname(files[0]), name)))
            ax.set_axis_off()
            ax.set_title(f"{titles[model]} - {name.replace('_overlay.png', '')}", fontsize=8)
    fig.tight_layout(pad=0.3)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(exp: Experiment, cfg: Dict, results: Dict, roots: Dict, seconds: float) -> str:
    vessel = (("val_mean_dice", "Dice"), ("val_cldice", "clDice"))
    lines = [f"Settings: {json.dumps(cfg)}; this invocation took {seconds / 60:.1f} min.", "", "Pre-training pools (pools.json):", "",
             *markdown_table(["pool", "frames", "megapixels", "frame sizes"], [[k, v["frames"], v["megapixels"], ", ".join(f"{s} ({c})" for s, c in v["sizes"].items())] for k, v in json.load(open(exp.path("pools.json"))).items()]), ""]
    sections = (("dca1", "DCA1 test", vessel, DCA1_PAIRS), ("xcad", "XCAD, all frames (DCA1-trained, no XCAD training)", vessel, XCAD_PAIRS),
                ("synthetic_to_dca1", "DCA1 test, models trained on synthetic frames only", vessel, ()),
                ("arcade_s", "ARCADE-S test", (("val_mean_dice", "Dice"), ("val_stenosis_f1", "F1 (ARCADE)")), ARCADE_PAIRS))
    for key, title, metrics, pairs in sections:
        if results.get(key):
            lines += [f"### {title}", "", *table(results[key], metrics), "", *intervals(results[key], pairs, metrics[0][0], metrics[0][1]), ""]
    for key, test in (("dca1", "dca1"), ("xcad", "xcad"), ("arcade_s", "arcade_s")):
        if roots.get(key):
            figure = overlay_figure(exp, roots[key], test, 3, exp.path("figures", f"{key}_overlays.png"))
            if figure:
                lines += [f"![{key} overlays](figures/{os.path.basename(figure)})", ""]
    text = "\n".join(lines)
    write_text(exp.path("results.md"), text)
    write_json(exp.path("results.json"), {"settings": cfg, "results": results, "timings_s": exp.timings})
    return text


# ---- main ------------------------------------------------------------------------------------


def main(out: str = "runs/real_labels", quick: bool = False, tasks: str = None, models: str = None, arcade_models: str = None, workers: int = 1, **sizes):
    """Run (or resume) the real-label experiments and write OUT/results.md. ``tasks``: some of
    dca1, cross, arcade_s (comma-separated; default all); ``models``: some of the trained rows
    (default all; Frangi always runs); ``arcade_models``: the ARCADE-S rows among them (default
    all four; the ViT runs are the slow ones). Sizes (``--finetune_epochs`` etc.)
    override the profile's."""
    cfg = choose_profile(PROFILES, "quick" if quick else "default", sizes)
    chosen = tasks.split(",") if isinstance(tasks, str) else list(tasks or TASKS)
    unknown = sorted(set(chosen) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown --tasks {unknown}; expected some of {list(TASKS)}")
    wanted = models.split(",") if isinstance(models, str) else list(models or MODELS)
    if sorted(set(wanted) - set(MODELS)):
        raise ValueError(f"unknown --models {sorted(set(wanted) - set(MODELS))}; expected some of {list(MODELS)}")
    exp = Experiment(out, STAGES)
    exp.keep_settings(cfg)
    started = time.time()
    exp.stage("data")
    lists = prepare_data(exp, cfg, chosen, workers)
    print(open(exp.path("pools.json")).read(), flush=True)
    exp.stage("pretrain")
    needed = {MODELS[m][1] for m in wanted if MODELS[m][1]}
    encoders = {kind: pretrain(exp, cfg, lists, kind, workers) for kind in ("mae", "vasomim") if kind in needed}
    results: Dict[str, Dict] = {}
    roots: Dict[str, Dict[str, str]] = {}
    vessel = ("val_mean_dice", "val_cldice")
    if "dca1" in chosen or "cross" in chosen:
        exp.stage("dca1")
        roots["dca1"] = {"frangi": frangi(exp)}
        results["dca1"] = {"frangi": evaluate(exp, "dca1", "frangi", "frangi", lists["dca1"], "dca1", metrics=vessel)}
        for model in (m for m in MODELS if m in wanted):
            roots["dca1"][model] = finetune(exp, cfg, "dca1", model, lists["dca1"], cfg["finetune_epochs"], encoders, workers)
            results["dca1"][model] = evaluate(exp, "dca1", model, roots["dca1"][model], lists["dca1"], "dca1", metrics=vessel)
    if "cross" in chosen:
        exp.stage("cross")
        roots["xcad"] = dict(roots["dca1"])
        results["xcad"] = {m: evaluate(exp, "xcad", m, r, lists["xcad"], "xcad", metrics=vessel) for m, r in roots["dca1"].items()}
        results["synthetic_to_dca1"] = {}
        for model in (m for m in SYNTHETIC_MODELS if m in wanted):
            root = finetune(exp, cfg, "synthetic", model, lists["synth"], cfg["synthetic_epochs"], encoders, workers)
            results["synthetic_to_dca1"][model] = evaluate(exp, "synthetic", model, root, lists["dca1"], "dca1", metrics=vessel)
    if "arcade_s" in chosen:
        exp.stage("arcade_s")
        roots["arcade_s"], results["arcade_s"] = {}, {}
        arcade_wanted = arcade_models.split(",") if isinstance(arcade_models, str) else list(arcade_models or ARCADE_MODELS)
        for model in (m for m in ARCADE_MODELS if m in wanted and m in arcade_wanted):
            roots["arcade_s"][model] = finetune(exp, cfg, "arcade_s", model, lists["arcade_s"], cfg["arcade_epochs"], encoders, workers, overlays=["arcade_s"])
            results["arcade_s"][model] = evaluate(exp, "arcade_s", model, roots["arcade_s"][model], lists["arcade_s"], "arcade_s", overlays=["arcade_s"], metrics=("val_mean_dice", "val_stenosis_f1"))
    exp.stage("report")
    print(write_report(exp, cfg, results, roots, time.time() - started))


if __name__ == "__main__":
    fire.Fire(main)
