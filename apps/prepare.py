"""Turn public angiography data sets, as distributed, into images/labels + a MONAI datalist.

    python -m apps.prepare arcade --images DIR --annotations test.json --out OUT [--categories '[stenosis]'] [--split arcade_stenosis]
    python -m apps.prepare pairs  --images DIR [--masks DIR] --out OUT [--split xcad_samples] [--mask_threshold 127]
    python -m apps.prepare dca1   ROOT OUT                           # ROOT: N.pgm + N_gt.pgm, or images/ + masks/ (tr_NN / te_NN -> packaged split dca1)
    python -m apps.prepare arcade-s TRAIN_ROOT TEST_ROOT OUT         # ARCADE-S: stenosis train 1,000 / test 300 (packaged split arcade_s)
    python -m apps.prepare arcade_s_boxes TRAIN_ROOT TEST_ROOT OUT   # ARCADE-S stenosis boxes (same split as arcade-s) -> detection datalist
    python -m apps.prepare coco_boxes IMAGES ANNOTATIONS.json OUT [--categories stenosis]
    python -m apps.prepare voc_boxes IMAGES ANNOTATIONS_DIR OUT [--class_names stenosis]     # Pascal VOC xml, matched to images by file stem
    python -m apps.prepare csv_boxes CSV OUT [--images_root DIR] [--class_names stenosis]    # header image,x1,y1,x2,y2,label
    python -m apps.prepare dicom  --src FILE_OR_DIR --out OUT [--frames all|max_contrast|N]
    python -m apps.prepare priors SRC [OUT] [--workers N]            # official binary vessel priors (PNG)
    python -m apps.prepare bootstrap-segmenter --out bundles/vasomim_pretrain/models/bootstrap_unet.pt [--datalist D | --data_glob 'DIR/*.png']
    python -m apps.prepare pack SRC OUT [--size 512] [--workers 8]   # frames (+ priors) -> packed frame store

``--split`` takes a packaged split name (xcad_samples, dca1, arcade_s; arcade_stenosis is
superseded by arcade_s), a JSON file with
"training" / "validation" / "test" lists of file stems, one of those three names (the whole
folder in that split: ``--split test`` prepares an external test set, as does
``--val_fraction 0 --test_fraction 1``), or nothing (hash split by case with
--val_fraction / --test_fraction). Binary labels are written as 0/255; masks with stray grey
values need ``--mask_threshold T`` (foreground = value > T).
"""

from __future__ import annotations

import fire

from angiokit.data.adapters import (
    prepare_arcade,
    prepare_arcade_s,
    prepare_arcade_s_boxes,
    prepare_boxes,
    prepare_dca1,
    prepare_dicom_frames,
    prepare_pairs,
    read_coco_boxes,
    read_csv_boxes,
    read_voc_boxes,
)
from angiokit.data.errors import read_json
from angiokit.data.priors import write_priors


def arcade(images: str, annotations: str, out: str, categories=None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """ARCADE COCO polygons -> binary + multi-class masks."""
    cats = [categories] if isinstance(categories, (str, int)) else categories
    print(f"datalist written to {prepare_arcade(images, annotations, out, cats, split, val_fraction, test_fraction, seed)}")


def pairs(images: str, out: str, masks: str = None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, mask_threshold: float = None):
    """Images + masks matched by file stem (or unlabeled frames without --masks). Masks must be
    binary (0 and one value) unless --mask_threshold T is given: foreground = value > T."""
    print(f"datalist written to {prepare_pairs(images, masks, out, split, val_fraction, test_fraction, seed, mask_threshold=mask_threshold)}")


def dca1(root: str, out: str, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """DCA1 / 134XCA: N.pgm + N_gt.pgm in one folder, or images/ + masks/ with identical names.
    Masks thresholded at > 127. tr_NN / te_NN names and no --split: the packaged dca1 split (test
    = te_*, validation = a --val_fraction hold-out of tr_* by --seed)."""
    print(f"datalist written to {prepare_dca1(root, out, split, val_fraction, test_fraction, seed)}")


def arcade_s(train_root: str, test_root: str, out: str, split="arcade_s", val_fraction: float = 0.1, seed: int = 0):
    """ARCADE-S: stenosis TRAIN_ROOT (1,000) and TEST_ROOT (300), each images/ + annotations/*.json
    -> one datalist: training / validation (a --val_fraction hold-out by --seed) from train, test
    = the 300; binary stenosis masks rasterised from the COCO polygons; case ids train_N / test_N."""
    print(f"datalist written to {prepare_arcade_s(train_root, test_root, out, split, val_fraction, seed)}")


def _names(value):
    """A fire argument naming classes ("stenosis", "a,b", '[a,b]' or a list) -> a list, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _print_boxes(path: str):
    """The datalist path and its frame / box count per split."""
    doc = read_json(path, "datalist")
    print(f"datalist written to {path}")
    for name in ("training", "validation", "test"):
        entries = doc.get(name, [])
        print(f"  {name}: {len(entries)} frames, {sum(len(e['box']) for e in entries)} boxes")


def _classes_of(items, class_names):
    """The class names the items' labels index (a reader's inferred ones when none were given)."""
    if items and items[0]["classes"]:
        return items[0]["classes"]
    return class_names or ["stenosis"]


def arcade_s_boxes(train_root: str, test_root: str, out: str, split="arcade_s", val_fraction: float = 0.1, seed: int = 0):
    """ARCADE-S stenosis boxes (COCO bbox of every "stenosis" annotation) -> a detection datalist
    (box [x1, y1, x2, y2] pixels, label 0 = stenosis) with the same case ids train_N / test_N and
    the same training / validation / test split as arcade-s."""
    _print_boxes(prepare_arcade_s_boxes(train_root, test_root, out, split, val_fraction, seed))


def coco_boxes(images: str, annotations: str, out: str, categories="stenosis", split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """COCO bbox annotations of --categories (label = index in that order) -> a detection datalist;
    every image of the file is kept, with or without boxes."""
    cats = _names(categories)
    items = read_coco_boxes(images, annotations, cats)
    _print_boxes(prepare_boxes(items, out, split, val_fraction, test_fraction, seed, f"boxes of {cats} from {annotations}", cats))


def voc_boxes(images: str, annotations: str, out: str, class_names=None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """Pascal VOC xml (one per image, matched by file stem) -> a detection datalist. Class names
    match case-insensitively; without --class_names: the sorted names found, lower-cased."""
    items = read_voc_boxes(annotations, images, _names(class_names))
    names = _classes_of(items, _names(class_names))
    _print_boxes(prepare_boxes(items, out, split, val_fraction, test_fraction, seed, f"boxes of {names} from the VOC xml in {annotations}", names))


def csv_boxes(csv: str, out: str, images_root: str = None, class_names=None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """A CSV with header image,x1,y1,x2,y2,label (one row per box; empty x1..label = a frame
    without boxes; relative images against --images_root or the CSV's folder) -> a detection datalist."""
    items = read_csv_boxes(csv, images_root, _names(class_names))
    names = _classes_of(items, _names(class_names))
    _print_boxes(prepare_boxes(items, out, split, val_fraction, test_fraction, seed, f"boxes of {names} from {csv}", names))


def dicom(src: str, out: str, frames="all", split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """XA DICOM file(s) -> PNG frames for unlabeled pre-training."""
    print(f"datalist written to {prepare_dicom_frames(src, out, frames, split, val_fraction, test_fraction, seed)}")


def priors(src: str = None, out: str = None, kind: str = "binary", sigmas=(1, 2, 3, 4), border: int = 20, percentile: float = 92.0, workers: int = 1, overwrite: bool = False, datalist: str = None):
    """The official VasoMIM vessel prior of every frame of SRC, offline: Sato (sigmas 1-4) of the
    8-bit frame, 20-px border zeroed, 92nd percentile, the 4-connected region grown from the
    maximum; 0/255 PNGs. SRC a folder: OUT (default <SRC>_frangi, beside it) mirrors its tree
    with <name>.png. SRC a datalist JSON (or --datalist): <stem>.png in OUT (default priors/
    beside it) and datalist_priors.json beside it. --kind continuous: Sato scaled to 0-255.
    Existing priors are kept unless --overwrite."""
    src = src or datalist
    if not src:
        raise SystemExit("priors: give SRC (a folder of frames or a datalist JSON)")
    written = write_priors(src, out, kind, sigmas, border, percentile, workers, overwrite)
    print(f"{'priors written to' if not written.endswith('.json') else 'datalist written to'} {written}")


def bootstrap_segmenter(out: str, datalist: str = None, data_glob: str = None, iterations: int = 1000, batch_size: int = 8, image_size: int = 224, device: str = None, seed: int = 0):
    """Small U-Net trained on the binary Sato pseudo-masks (no labels); VasoMIM's segmenter S.
    Without --datalist / --data_glob it trains on synthetic frames."""
    from angiokit.engines.bootstrap import train_bootstrap_segmenter

    path = train_bootstrap_segmenter(out, datalist, data_glob, iterations, batch_size, image_size, device=device, seed=seed)
    print(f"segmenter written to {path}; use it with configs/segmenter_checkpoint.json (--segmenter_checkpoint {path})")


def pack(src: str, out: str, size: int = 512, workers: int = 1, splits=("training",)):
    """Frames under SRC (a folder of frames / DICOM cines / NIfTI, an XA-170K root with its
    <source>_frangi priors, or a datalist JSON and its --splits) -> a packed frame store OUT
    (uint8 memory-mapped .npy at --size px + index.json) for configs/packed.json."""
    from angiokit.data.frame_store import pack_frames, read_store_index

    path = pack_frames(src, out, size, [splits] if isinstance(splits, str) else splits, workers)
    index = read_store_index(path)
    print(f"frame store written to {path}: {index['count']} frames at {index['size']} px, {index['prior_count']} with offline priors")


if __name__ == "__main__":
    fire.Fire({"arcade": arcade, "pairs": pairs, "dca1": dca1, "arcade-s": arcade_s, "arcade_s_boxes": arcade_s_boxes, "coco_boxes": coco_boxes, "voc_boxes": voc_boxes, "csv_boxes": csv_boxes, "dicom": dicom, "priors": priors, "bootstrap-segmenter": bootstrap_segmenter, "pack": pack})
