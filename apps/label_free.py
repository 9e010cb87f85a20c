"""Label-free vessel segmentation (docs/results.md, "Label-free"): models trained without a single
real label, scored on the DCA1 test frames (40) and the XCAD frames (10), one ablation step a row.

    python -m apps.label_free --out runs/label_free                 # CPU size
    python -m apps.label_free --out runs/label_free_quick --quick   # plumbing check, minutes

Rows (each adds one step to the one before; ``configs/label_free.json`` is the recipe, whose
engine preset is now the default one: the fitted ``real_matched`` lowered Dice, so the rows from
engine on name it explicitly):
  synthetic     synthetic frames only (fresh scenes every epoch), the engine's defaults
  engine        + the engine fitted to the measured gap (``angiokit.data.synthetic.REAL_MATCHED``:
                  wider vessels, less noise, a narrower contrast spread, round fields of view)
  composite     + the synthetic vessels drawn into vessel-free real frames (``composite_prob`` 0.7)
  style         + Fourier style of real frames (``style_prob`` 0.5)
  input         + the local-contrast input (the whole recipe)
  self_training + a student trained on the recipe plus the ``pseudo_frames`` (128) frames the
                  recipe's model labels most confidently (``angiokit.engines.self_training``); its
                  epochs hold 128 of them and 128 synthetic scenes, the other rows' 256 frames
  recipe_default_engine  the recipe (compositing, style, local contrast) on the engine's defaults,
                  compared with the synthetic row: whether the adaptation steps help without the preset
  frangi        Frangi + Otsu, no training

Unlabelled real frames: ARCADE's stenosis *training* frames and the Kragujevac cine frames, never
a DCA1 or XCAD frame (asserted), so no run sees, even unlabelled, a frame it is tested on. The
engine preset ``real_matched`` (rows engine onward) was fitted to DCA1's training frames and the
unlabelled sets only (``apps.synth_gap --tuning_only``).
Each step is a real bundle run, skipped once finished.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Dict, List, Mapping

import fire

from apps.experiment import SHARED, Experiment, choose_profile, evaluation_dir, markdown_table, read_per_image, vit_overrides, warmup, write_json, write_text

PROFILES = {
    "quick": dict(image_size=32, epochs=1, synthetic_length=4, batch_size=2, width=64, depth=2, real_frames=4, pseudo_frames=2, lr=0.0005, test_frames=3),
    # CPU size: the real-label experiments' ViT (192 x 6) at 256 px
    "default": dict(image_size=256, epochs=16, synthetic_length=256, batch_size=4, width=192, depth=6, real_frames=None, pseudo_frames=128, lr=0.0005, test_frames=None),
}
ROWS = ("synthetic", "engine", "composite", "style", "input", "self_training", "recipe_default_engine")
BUILDS_ON = {"recipe_default_engine": "synthetic"}
"""Rows that are not the next step of the row above, and the row they add to."""
# the label_free overlay's switches per row (the overlay's defaults are recipe_default_engine's:
# the fitted preset lowered Dice, docs/results.md "Label-free")
SWITCHES: Dict[str, Dict[str, object]] = {
    "composite": {"synthetic_preset": "real_matched", "composite_prob": 0.7, "style_prob": 0.0, "input_transform": "none"},
    "style": {"synthetic_preset": "real_matched", "composite_prob": 0.7, "style_prob": 0.5, "input_transform": "none"},
    "input": {"synthetic_preset": "real_matched"},
    "self_training": {"synthetic_preset": "real_matched"},
    "recipe_default_engine": {"synthetic_preset": "default"},
}
NAMES = {
    "frangi": "Frangi + Otsu (no training)", "synthetic": "synthetic frames only (engine defaults)",
    "engine": "+ engine fitted to the measured gap", "composite": "+ vessels composited onto real backgrounds",
    "style": "+ Fourier style of real frames", "input": "+ local-contrast input (the label-free recipe)", "self_training": "+ self-training on confident real frames",
    "recipe_default_engine": "the recipe on the engine's defaults (synthetic row + compositing, style, local contrast)",
}
SHORT = {"frangi": "Frangi + Otsu", "synthetic": "synthetic only", "engine": "+ fitted preset", "composite": "+ compositing", "style": "+ Fourier style",
         "input": "+ local contrast", "self_training": "+ self-training", "recipe_default_engine": "recipe, default preset"}
"""Row names for the figure."""
TESTS = ("dca1", "xcad")
HELD_OUT = ("dca1", "xcad")
"""Sets whose frames no run may read: they are the tests."""


def unlabelled_frames(cfg: Dict) -> List[str]:
    """The real frames the runs may read unlabelled (ARCADE stenosis train, Kragujevac)."""
    files = sorted(glob.glob(os.path.join(SHARED, "arcade_stenosis_train", "images", "*.png")))
    files += sorted(glob.glob(os.path.join(SHARED, "xa_cine_kragujevac", "images", "*.png")))
    if cfg["real_frames"]:
        files = files[: cfg["real_frames"]]
    if not files:
        raise FileNotFoundError(f"no unlabelled real frames under {SHARED} (arcade_stenosis_train/images, xa_cine_kragujevac/images)")
    leaked = [f for f in files if any(f"{os.sep}{name}" in os.path.abspath(f) for name in HELD_OUT)]
    if leaked:
        raise ValueError(f"a test set's frames among the unlabelled ones: {leaked[:3]}")
    return files


def prepare(exp: Experiment, cfg: Dict) -> Dict[str, str]:
    """Test datalists (DCA1's packaged test split, all 10 XCAD frames) and the unlabelled list."""
    from angiokit.data.adapters import prepare_dca1, prepare_pairs

    lists = {"dca1": exp.path("data", "dca1", "datalist.json"), "xcad": exp.path("data", "xcad", "datalist.json")}
    if not os.path.exists(lists["dca1"]):
        prepare_dca1(os.path.join(SHARED, "dca1"), os.path.dirname(lists["dca1"]), progress=False)
    if not os.path.exists(lists["xcad"]):
        stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(SHARED, "xcad_samples", "images")))
        prepare_pairs(os.path.join(SHARED, "xcad_samples", "images"), os.path.join(SHARED, "xcad_samples", "masks"), os.path.dirname(lists["xcad"]),
                      split={"training": [], "validation": [], "test": stems}, progress=False)
    from apps.real_labels import subset

    lists.update({t: subset(lists[t], cfg["test_frames"], exp.path("data", f"{t}_subset.json")) for t in TESTS})  # the quick form only
    lists["unlabelled"] = write_json(exp.path("data", "unlabelled.json"), {"training": [{"image": f} for f in unlabelled_frames(cfg)]})
    return lists


def train(exp: Experiment, cfg: Dict, row: str, lists: Mapping[str, str], workers: int, pseudo: str = "") -> str:
    epochs = cfg["epochs"]
    overrides = {**vit_overrides(cfg["width"], cfg["depth"]), "image_size": cfg["image_size"], "max_epochs": epochs, "warmup_epochs": warmup(epochs),
                 "val_interval": max(1, epochs // 4), "batch_size": cfg["batch_size"], "num_workers": workers, "lr": cfg["lr"],
                 "synthetic_length": cfg["synthetic_length"]}
    configs = ["train"]
    if row == "engine":
        overrides["train#dataset#synthetic_config"] = "$angiokit.data.synthetic.PRESETS['real_matched']"
    elif row != "synthetic":
        configs.append("label_free")
        overrides.update({"real_unlabelled": lists["unlabelled"], **SWITCHES[row]})
    if pseudo:
        # the student: pseudo-labelled real frames mixed with synthetic scenes, validated on synthetic
        # ones; an epoch holds as many frames as every other row's (the same training budget)
        overrides.update({"datalist": pseudo, "validate#dataset#data": "$[]", "synthetic_length": cfg["synthetic_length"] - cfg["pseudo_frames"]})
    exp.bundle(f"train_{row}", "xa_vessel_seg", configs, row, overrides, os.path.join("models", "model.pt"))
    return row


def pseudo_labels(exp: Experiment, cfg: Dict, teacher: str, lists: Mapping[str, str], workers: int) -> str:
    """The teacher's confident frames among the unlabelled ones; their datalist."""
    from angiokit.engines.self_training import pseudo_label
    from angiokit.networks import checkpoint_setting, load_network

    out = exp.path("self_training", "pseudo")
    datalist = os.path.join(out, "datalist.json")
    if not os.path.exists(datalist):
        train(exp, cfg, teacher, lists, workers)  # skipped when its row ran
        checkpoint = exp.path(teacher, "models", "model.pt")
        files = [e["image"] for e in json.load(open(lists["unlabelled"]))["training"]]
        pseudo_label(load_network(checkpoint), files, out, image_size=int(checkpoint_setting(checkpoint, "image_size")), keep_fraction=min(1.0, cfg["pseudo_frames"] / len(files)))
    return datalist


def evaluate(exp: Experiment, row: str, test: str, datalist: str) -> Dict[str, Dict[str, float]]:
    configs = ["train"] + (["frangi"] if row == "frangi" else []) + ["evaluate"]
    out = evaluation_dir(exp.path(row), test)
    exp.bundle(f"evaluate_{row}_{test}", "xa_vessel_seg", configs, row, {"datalist": datalist, "output_dir": out, "num_workers": 0}, os.path.join(out, "metrics.csv"))
    return {m: {os.path.basename(k): v for k, v in read_per_image(out, m).items()} for m in ("val_mean_dice", "val_cldice")}


TARGET_DICE = 0.70
"""Issue 31's target on both test sets."""
OVERLAY_ROWS = ("frangi", "synthetic", "input", "self_training")


def row_name(row: str, rows, names: Mapping[str, str]) -> str:
    """A row's name; where the composite and style rows did not run, the recipe's row adds their
    steps too, and its name says so."""
    if row == "input" and not {"composite", "style"} <= set(rows):
        return "+ compositing, Fourier style, local contrast" + (" (the label-free recipe; those steps' own rows not run)" if names is NAMES else "")
    return names[row]


def dice_figure(scores: Mapping[str, Mapping[str, Dict]], path: str) -> str:
    """Dice of every row on both test sets at a glance: a dot per frame, the mean as a bar, the
    target as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = list(scores)
    fig, axes = plt.subplots(1, len(TESTS), figsize=(6.0 * len(TESTS), 0.5 * len(rows) + 1.6), squeeze=False, sharex=True)
    rng = np.random.default_rng(0)
    for ax, test in zip(axes[0], TESTS):
        for y, row in enumerate(rows):
            values = np.asarray(list(scores[row][test]["val_mean_dice"].values()))
            ax.scatter(values, y + rng.uniform(-0.18, 0.18, len(values)), s=9, alpha=0.45, color="tab:blue" if row != "frangi" else "tab:grey")
            ax.plot([values.mean()] * 2, [y - 0.32, y + 0.32], color="black", lw=2.2)
            ax.text(0.98, y, f"{values.mean():.3f}", va="center", ha="right", fontsize=8)
        ax.axvline(TARGET_DICE, color="tab:red", ls="--", lw=1)
        ax.set_yticks(range(len(rows)), [row_name(r, rows, SHORT) for r in rows], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.0)
        ax.set_xlabel("Dice per frame (bar: mean; red: the 0.70 target)")
        n = len(next(iter(scores.values()))[test]["val_mean_dice"])
        ax.set_title(f"{test.upper()} test, {n} frames (no real label in training)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def error_breakdown(checkpoint: str, datalist: str) -> Dict[str, float]:
    """Where a model's Dice goes on a test set (means over frames): precision, recall, and the
    share of its false-positive pixels in predicted components that touch no labelled vessel
    (isolated blobs: clutter taken for vessels) rather than along a vessel (width, extent)."""
    import numpy as np
    import torch
    from scipy import ndimage

    from angiokit.data.readers import load_frame
    from angiokit.data.segmentation import datalist_items
    from angiokit.engines.self_training import vessel_probability
    from angiokit.networks import checkpoint_setting, load_network

    network, size = load_network(checkpoint).eval(), int(checkpoint_setting(checkpoint, "image_size"))
    rows = []
    for item in datalist_items(datalist, ["test"]):
        truth = load_frame(item["label"])[0] > 0
        with torch.no_grad():
            pred = vessel_probability(network, load_frame(item["image"])[0], size) > 0.5
        components, n = ndimage.label(pred)
        touching = np.unique(components[truth & pred])
        isolated = pred & ~np.isin(components, touching)
        fp = pred & ~truth
        rows.append(((pred & truth).sum() / max(pred.sum(), 1), (pred & truth).sum() / max(truth.sum(), 1), isolated.sum() / max(fp.sum(), 1)))
    precision, recall, isolated = np.asarray(rows).mean(axis=0)
    return {"precision": float(precision), "recall": float(recall), "isolated_fp_share": float(isolated)}


def report(exp: Experiment, cfg: Dict, scores: Mapping[str, Mapping[str, Dict]], seconds: float, lists: Mapping[str, str] = None) -> str:
    from angiokit.metrics import paired_difference
    from apps.real_labels import mean_sd

    lines = [f"# Label-free vessel segmentation ({seconds / 60:.0f} min)", "", f"Settings: {json.dumps(cfg)}", ""]
    for test in TESTS:
        rows = []
        previous = None
        for row, by_test in scores.items():
            s = by_test[test]
            step = ""
            base = BUILDS_ON.get(row, previous)
            if base is not None and base in scores and row != "frangi":
                d = paired_difference(s["val_mean_dice"], scores[base][test]["val_mean_dice"])
                step = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" + (f" (vs {base})" if row in BUILDS_ON else "")
            rows.append([row_name(row, list(scores), NAMES), len(s["val_mean_dice"]), mean_sd(s["val_mean_dice"]), mean_sd(s["val_cldice"]), step])
            previous = row if row != "frangi" and row not in BUILDS_ON else previous
        lines += [f"## {test.upper()} ({len(next(iter(scores.values()))[test]['val_mean_dice'])} frames)", ""]
        lines += markdown_table(["method", "n", "Dice", "clDice", "Dice − the row above (paired 95 % interval)"], rows) + [""]
    if lists:
        cache = exp.path("error_breakdown.json")
        breakdown = json.load(open(cache)) if os.path.exists(cache) else {}
        table = []
        for row in (r for r in scores if r != "frangi"):
            for test in TESTS:
                key = f"{row}/{test}"
                if key not in breakdown:
                    breakdown[key] = error_breakdown(exp.path(row, "models", "model.pt"), lists[test])
                b = breakdown[key]
                table.append([row_name(row, list(scores), NAMES), test.upper(), f"{b['precision']:.3f}", f"{b['recall']:.3f}", f"{b['isolated_fp_share']:.2f}"])
        write_json(cache, breakdown)
        lines += ["## Where the Dice goes (means over frames)", ""]
        lines += markdown_table(["method", "test", "precision", "recall", "share of false-positive pixels in blobs touching no vessel"], table) + [""]
    lines += ["![Dice per frame of every row](figures/label_free_dice.png)", ""]
    dice_figure(scores, exp.path("figures", "label_free_dice.png"))
    from apps.real_labels import overlay_figure

    for test in TESTS:
        roots = {r: r for r in OVERLAY_ROWS if r in scores}
        figure = overlay_figure(exp, roots, test, 3, exp.path("figures", f"label_free_{test}_overlays.png"), titles=NAMES)
        if figure:
            lines += [f"![{test} overlays](figures/{os.path.basename(figure)})", ""]
    write_json(exp.path("results.json"), {"settings": cfg, "scores": scores})
    return write_text(exp.path("results.md"), "\n".join(lines))


def main(out: str = "runs/label_free", quick: bool = False, rows: str = None, workers: int = 1, **sizes):
    """Run (or resume) the rows (``--rows synthetic,input`` for some; Frangi always), evaluate
    each on DCA1 test and XCAD, write OUT/results.md."""
    cfg = choose_profile(PROFILES, "quick" if quick else "default", sizes)
    chosen = [r.strip() for r in (rows.split(",") if isinstance(rows, str) else rows or ROWS) if r.strip()]
    if sorted(set(chosen) - set(ROWS)):
        raise ValueError(f"unknown rows {sorted(set(chosen) - set(ROWS))}; the rows are {list(ROWS)}")
    exp = Experiment(out, ("data", "train and evaluate", "report"))
    exp.keep_settings(cfg)
    started = time.time()
    exp.stage("data")
    lists = prepare(exp, cfg)
    exp.stage("train and evaluate")
    exp.bundle("frangi", "xa_vessel_seg", ["train", "frangi"], "frangi", {}, os.path.join("models", "model.pt"))
    scores = {"frangi": {t: evaluate(exp, "frangi", t, lists[t]) for t in TESTS}}
    for row in (r for r in ROWS if r in chosen):
        pseudo = pseudo_labels(exp, cfg, "input", lists, workers) if row == "self_training" else ""
        train(exp, cfg, row, lists, workers, pseudo)
        scores[row] = {t: evaluate(exp, row, t, lists[t]) for t in TESTS}
        print(f"  {row}: " + ", ".join(f"{t} Dice {sum(scores[row][t]['val_mean_dice'].values()) / len(scores[row][t]['val_mean_dice']):.3f}" for t in TESTS), flush=True)
    exp.stage("report")
    path = report(exp, cfg, scores, time.time() - started, lists)
    print(open(path).read())
    return path


if __name__ == "__main__":
    fire.Fire(main)
