"""ARCADE-S: the stenosis F1 metric, and the arcade_s overlay of the segmentation bundle run on a
handful of real ARCADE frames (prepare -> train 1 epoch at tiny sizes -> evaluate)."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from angiokit.data.adapters import prepare_arcade_s
from angiokit.metrics import StenosisF1Metric, stenosis_f1_score

from .bundle_utils import workflow
from .conftest import shared_data


def _mask(*boxes, size=40):
    mask = np.zeros((size, size), bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


STENOSIS_A, STENOSIS_B = (2, 12, 2, 12), (25, 35, 25, 35)


@pytest.mark.parametrize("pred,target,expected", [
    (_mask(STENOSIS_A), _mask(STENOSIS_A), 1.0),
    (_mask(STENOSIS_A, STENOSIS_B), _mask(STENOSIS_A), 0.5),  # a false-positive region scores 0
    (_mask(STENOSIS_A), _mask(STENOSIS_A, STENOSIS_B), 0.5),  # a missed stenosis adds a 0
    (_mask((2, 12, 2, 7)), _mask(STENOSIS_A), 2 * 50 / (50 + 100)),  # area F1 of the pair
    (_mask((2, 12, 2, 7), (2, 12, 7, 12)), _mask(STENOSIS_A), 1.0),  # touching halves: one 8-connected region
    (_mask((2, 12, 2, 6), (2, 12, 8, 12)), _mask(STENOSIS_A), 2 * 40 / (40 + 100)),  # two regions both matching one stenosis
    (_mask(), _mask(), 1.0),
    (_mask(STENOSIS_A), _mask(), 0.0),
    (_mask(), _mask(STENOSIS_A), 0.0),
])
def test_stenosis_f1_follows_the_arcade_rule(pred, target, expected):
    assert stenosis_f1_score(pred, target) == pytest.approx(expected)


def test_stenosis_f1_metric_per_image_and_mean():
    preds = torch.from_numpy(np.stack([_mask(STENOSIS_A), _mask(STENOSIS_A, STENOSIS_B)]))[:, None].float()
    labels = torch.from_numpy(np.stack([_mask(STENOSIS_A), _mask(STENOSIS_A)]))[:, None].float()
    one_hot = lambda x: torch.cat([1 - x, x], 1)  # noqa: E731
    metric = StenosisF1Metric()
    per_image = metric(one_hot(preds), one_hot(labels))
    assert per_image.shape == (2, 1) and per_image[:, 0].tolist() == pytest.approx([1.0, 0.5])
    assert metric.aggregate().item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same"):
        metric(one_hot(preds), labels)


def _subset(root, split_name, names, dst):
    """A copy of an ARCADE split folder holding only ``names`` (images + trimmed COCO json)."""
    coco = json.load(open(root / "annotations" / f"{split_name}.json"))
    images = [i for i in coco["images"] if i["file_name"] in names]
    ids = {i["id"] for i in images}
    (dst / "images").mkdir(parents=True), (dst / "annotations").mkdir()
    for name in names:
        shutil.copy(root / "images" / name, dst / "images" / name)
    json.dump({**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}, open(dst / "annotations" / f"{split_name}.json", "w"))
    return dst


# tests override sizes only (and the data / output folders)
TINY = {"preset": "vit_tiny", "image_size": 32, "network_def#feature_size": 8, "batch_size": 2, "num_workers": 0, "warmup_epochs": 1, "val_interval": 1}


def test_arcade_s_overlay_trains_and_reports_dice_and_f1(tmp_path):
    train_names, test_names = [f"{i}.png" for i in range(1, 7)], [f"{i}.png" for i in range(1, 4)]
    train_root = _subset(shared_data("arcade_stenosis_train"), "train", train_names, tmp_path / "train")
    test_root = _subset(shared_data("arcade_stenosis_test"), "test", test_names, tmp_path / "test")
    split = {"training": [f"train_{n[:-4]}" for n in train_names], "test": [f"test_{n[:-4]}" for n in test_names]}
    datalist = json.load(open(prepare_arcade_s(str(train_root), str(test_root), str(tmp_path / "data"), split=split, val_fraction=0.34, progress=False)))
    assert len(datalist["training"]) + len(datalist["validation"]) == 6 and datalist["validation"] and len(datalist["test"]) == 3

    bundle = tmp_path / "bundle"
    common = {"bundle_root": str(bundle), "dataset_dir": str(tmp_path / "data")}
    train = workflow("xa_vessel_seg", ["train", "arcade_s"], "train", max_epochs=1, **common, **TINY)
    train.initialize()
    assert train.parser.get_parsed_content("num_classes") == 2 and train.parser.get("label_key") == "label"
    train.run()
    train.finalize()
    assert (bundle / "models" / "model.pt").is_file()

    out = tmp_path / "evaluation"
    evaluate = workflow("xa_vessel_seg", ["train", "arcade_s", "evaluate"], "train", output_dir=str(out), num_workers=0, **common)
    evaluate.initialize()
    evaluate.run()
    evaluate.finalize()
    summary = {row[0]: float(row[1]) for row in csv.reader(open(out / "metrics.csv"), delimiter="\t") if len(row) > 1} or {
        line.split(",")[0]: float(line.split(",")[1]) for line in open(out / "metrics.csv") if "," in line}
    assert set(summary) == {"val_mean_dice", "val_stenosis_f1"}
    assert all(0.0 <= v <= 1.0 for v in summary.values())
    rows = list(csv.reader(open(out / "val_stenosis_f1_raw.csv")))
    assert len(rows) == 1 + 3  # header + one row per test frame
