"""The classical baseline (no training): vesselness -> threshold -> mask, scored with Dice and clDice.

    python -m apps.classical --datalist OUT/datalist.json                          # Otsu per image, test split
    python -m apps.classical --datalist OUT/datalist.json --threshold tuned        # tuned on the training split
    python -m apps.classical --datalist D --method sato --eval_split validation --csv per_image.csv

The same segmenter is the vessel segmentation bundle's ``configs/frangi.json`` overlay, which is
how apps.demo and apps.compare score it (by the bundle's evaluate config, like every method);
this tool adds threshold tuning and figures of the vesselness.
"""

from __future__ import annotations

import fire

from angiokit.metrics.evaluate import datalist_entries, load_pairs, score_segmenter, summarise, write_rows_csv
from angiokit.networks import VesselnessThresholdSegmenter
from angiokit.visualize import error_overlay, save_grid, to_display


def error_figure(model, entries, rows, path):
    tiles, titles = [], []
    for e, (image, mask), row in zip(entries, load_pairs(entries), rows):
        x = image[None].float()
        tiles += [to_display(image[0].numpy()), to_display(model.response(x)[0, 0].numpy()), error_overlay(image[0].numpy(), model(x)[0, 0].numpy() > 0.5, mask)]
        titles += [row["image"], f"{model.method} vesselness", f"Dice {row['dice']:.2f}  clDice {row['cldice']:.2f}"]
    return save_grid(tiles, path, 3, titles, tile_inches=2.4, dpi=80, compact=True)


def main(datalist: str, method: str = "frangi", threshold: str = "otsu", sigmas=(1, 2, 3, 4), tune_split: str = "training", eval_split: str = "test", csv: str = None, figure: str = None):
    """``figure``: PNG with, per evaluated image (up to 4), the frame, its vesselness and the
    errors (green hits, red false positives, blue misses)."""
    model = VesselnessThresholdSegmenter(method, sigmas, "otsu")
    if threshold == "tuned":
        images, masks = zip(*load_pairs(datalist_entries(datalist, tune_split)))
        print(f"threshold tuned on {len(images)} {tune_split} image(s): {model.fit(images, masks):.3f}")
    elif threshold != "otsu":
        model.threshold = float(threshold)
    rows = score_segmenter(model, datalist_entries(datalist, eval_split))
    if csv:
        write_rows_csv(csv, rows)
    if figure:
        print(f"figure written to {error_figure(model, datalist_entries(datalist, eval_split)[:4], rows, figure)}")
    s = summarise(rows)
    print(f"method={method} threshold={threshold} split={eval_split} n={s['n']}")
    print(f"dice={s['dice_mean']:.4f} dice_std={s['dice_std']:.4f} cldice={s['cldice_mean']:.4f} cldice_std={s['cldice_std']:.4f}")
    return None


if __name__ == "__main__":
    fire.Fire(main)
