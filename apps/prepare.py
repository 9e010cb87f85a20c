"""Turn public angiography data sets, as distributed, into images/labels + a MONAI datalist.

    python -m apps.prepare arcade --images DIR --annotations test.json --out OUT [--categories '[stenosis]'] [--split arcade_stenosis]
    python -m apps.prepare pairs  --images DIR [--masks DIR] --out OUT [--split xcad_samples]
    python -m apps.prepare dca1   --root DIR --out OUT
    python -m apps.prepare dicom  --src FILE_OR_DIR --out OUT [--frames all|max_contrast|N]
    python -m apps.prepare priors --datalist OUT/datalist.json        # vesselness prior + coarse mask PNGs
    python -m apps.prepare bootstrap-segmenter --out bundles/vasomim_pretrain/models/bootstrap_unet.pt [--datalist D | --data_glob 'DIR/*.png']

``--split`` takes a packaged split name (xcad_samples, arcade_stenosis), a JSON file with
"training" / "validation" / "test" lists of file stems, or nothing (hash split by case with
--val_fraction / --test_fraction). Binary labels are written as 0/255.
"""

from __future__ import annotations

import fire

from angiokit.data.adapters import prepare_arcade, prepare_dca1, prepare_dicom_frames, prepare_pairs
from angiokit.data.priors import write_priors


def arcade(images: str, annotations: str, out: str, categories=None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """ARCADE COCO polygons -> binary + multi-class masks."""
    cats = [categories] if isinstance(categories, (str, int)) else categories
    print(f"datalist written to {prepare_arcade(images, annotations, out, cats, split, val_fraction, test_fraction, seed)}")


def pairs(images: str, out: str, masks: str = None, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """Images + masks matched by file stem (or unlabeled frames without --masks)."""
    print(f"datalist written to {prepare_pairs(images, masks, out, split, val_fraction, test_fraction, seed)}")


def dca1(root: str, out: str, split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """DCA1 / 134XCA: N.pgm + N_gt.pgm in one folder."""
    print(f"datalist written to {prepare_dca1(root, out, split, val_fraction, test_fraction, seed)}")


def dicom(src: str, out: str, frames="all", split=None, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """XA DICOM file(s) -> PNG frames for unlabeled pre-training."""
    print(f"datalist written to {prepare_dicom_frames(src, out, frames, split, val_fraction, test_fraction, seed)}")


def priors(datalist: str, out: str = None, sigmas=(1, 2, 3, 4), method: str = "sato", percentile: float = 92.0):
    """Vesselness prior and coarse vessel mask PNGs for every image of a datalist."""
    print(f"datalist written to {write_priors(datalist, out, sigmas, method, percentile)}")


def bootstrap_segmenter(out: str, datalist: str = None, data_glob: str = None, iterations: int = 1000, batch_size: int = 8, image_size: int = 224, device: str = None, seed: int = 0):
    """Small U-Net trained on coarse vesselness masks (no labels); VasoMIM's segmenter S.
    Without --datalist / --data_glob it trains on synthetic frames."""
    from angiokit.engines.bootstrap import train_bootstrap_segmenter

    path = train_bootstrap_segmenter(out, datalist, data_glob, iterations, batch_size, image_size, device=device, seed=seed)
    print(f"segmenter written to {path}; use it with configs/segmenter_checkpoint.json (--segmenter_checkpoint {path})")


if __name__ == "__main__":
    fire.Fire({"arcade": arcade, "pairs": pairs, "dca1": dca1, "dicom": dicom, "priors": priors, "bootstrap-segmenter": bootstrap_segmenter})
