"""Issue 30: what a new user met in the first hour (short runs without weights, an external test
set, masks with stray grey values, the documented checks and export commands)."""

import json
import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from angiokit.data import AngioDataError
from angiokit.engines import ValidateEveryAndLast, WeightsReport

from .bundle_utils import run_workflow
from .conftest import shared_data
from .detection_data import write_box_datalist

# one epoch, validation every 5: before, no validation ran and models/ stayed empty
SHORT = {"max_epochs": 1, "val_interval": 5, "num_workers": 0, "warmup_epochs": 0}
TINY_RUNS = {
    "xa_vessel_seg": {"preset": "vit_tiny", "image_size": 32, "network_def#feature_size": 8, "batch_size": 2, "synthetic_length": 4, "synthetic_val_length": 2},
    "cas_iqa": {"preset": "vit_tiny", "image_size": 32, "batch_size": 4, "synthetic_cases": 16, "benchmark_size": 64},
    "xa_stenosis_det": {"preset": "vit_tiny", "image_size": 64, "network_def#pyramid_channels": 32, "batch_size": 2},
}


@pytest.mark.parametrize("bundle", sorted(TINY_RUNS))
def test_a_run_shorter_than_the_validation_interval_keeps_its_weights(bundle, tmp_path):
    extra = {}
    if bundle == "xa_stenosis_det":
        extra["datalist"] = write_box_datalist(tmp_path / "boxes", n_train=2, n_val=1, n_test=1)
    wf = run_workflow(bundle, ["train"], "train", tmp_path / "run", **SHORT, **TINY_RUNS[bundle], **extra)
    weights = tmp_path / "run" / "models" / "model.pt"
    assert weights.is_file(), f"{bundle}: a 1-epoch run with val_interval 5 left no model.pt"
    assert "model" in torch.load(weights, weights_only=True)
    report = [h for h in wf.parser.get_parsed_content("train#handlers") if isinstance(h, WeightsReport)]
    assert len(report) == 1 and str(weights) in report[0].message() and "at epoch 1" in report[0].message()


def _trainer(max_epochs):
    trainer = Engine(lambda engine, batch: None)
    return trainer, [None] * 2, max_epochs


def test_validation_runs_every_interval_and_at_the_last_epoch():
    from monai.engines import Evaluator

    class Counting(Evaluator):  # stands in for the bundle's validator: records the epochs it ran at
        def __init__(self):
            self.epochs = []

        def run(self, global_epoch=1):
            self.epochs.append(global_epoch)

    for max_epochs, interval, expected in ((1, 5, [1]), (7, 3, [3, 6, 7]), (6, 3, [3, 6])):
        validator = Counting()
        trainer, data, _ = _trainer(max_epochs)
        ValidateEveryAndLast(interval, validator).attach(trainer)
        trainer.run(data, max_epochs=max_epochs)
        assert validator.epochs == expected, (max_epochs, interval)


def test_the_weights_report_says_where_the_weights_went_or_that_there_are_none(tmp_path, caplog):
    trainer, data, _ = _trainer(1)
    WeightsReport(str(tmp_path)).attach(trainer)
    with caplog.at_level(logging.INFO, logger="angiokit.engines.training_handlers"):
        trainer.run(data, max_epochs=1)
    assert any(r.levelno == logging.WARNING and "no weights were written" in r.getMessage() and str(tmp_path) in r.getMessage() for r in caplog.records)
    torch.save({}, tmp_path / "model.pt")
    assert WeightsReport(str(tmp_path)).message() == f"weights: {tmp_path / 'model.pt'}"


# ---- apps.prepare: an external test set, masks with stray grey values ---------------------------


def _folder(tmp_path, masks_values=(0, 255), n=4):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(images / f"f{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 14:18] = masks_values[-1]
        mask[0, : len(masks_values)] = masks_values  # the stray values, on a few pixels
        Image.fromarray(mask).save(masks / f"f{i}.png")
    return images, masks


@pytest.mark.parametrize("how", [{"val_fraction": 0, "test_fraction": 1.0}, {"split": "test"}])
def test_a_folder_can_be_prepared_as_all_test(tmp_path, how):
    from apps.prepare import pairs

    images, masks = _folder(tmp_path)
    pairs(str(images), str(tmp_path / "out"), masks=str(masks), **how)
    doc = json.load(open(tmp_path / "out" / "datalist.json"))
    assert len(doc["test"]) == 4 and doc["training"] == [] and doc["validation"] == []


def test_fractions_beyond_one_are_still_refused():
    from angiokit.data.datalist import assign_splits

    with pytest.raises(ValueError, match="sum to at most 1"):
        assign_splits(["a", "b"], val_fraction=0.5, test_fraction=0.6)


def test_mask_threshold_prepares_masks_with_stray_grey_values(tmp_path):
    from apps.prepare import pairs

    images, masks = _folder(tmp_path, masks_values=(0, 1, 2, 4, 255))
    with pytest.raises(AngioDataError, match="--mask_threshold"):
        pairs(str(images), str(tmp_path / "refused"), masks=str(masks))
    pairs(str(images), str(tmp_path / "out"), masks=str(masks), mask_threshold=127)
    label = np.array(Image.open(tmp_path / "out" / "labels" / "f0.png"))
    assert set(np.unique(label)) == {0, 255}
    assert (label > 0).sum() == 16 * 4 + 1  # the bar and the one 255 pixel; 1, 2, 4 are background
    assert "thresholded at > 127" in json.load(open(tmp_path / "out" / "datalist.json"))["description"]


def test_mask_threshold_on_dca1_te_23(tmp_path):
    root = shared_data("dca1")  # skips, with the reason, without ../shared/data
    from apps.prepare import pairs

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for folder, target in (("images", images), ("masks", masks)):
        source = next((root / folder).glob("te_23.*"))
        (target / source.name).symlink_to(source)
    values = np.unique(np.array(Image.open(next(masks.iterdir()))))
    assert len(values) > 2, f"te_23's mask is binary now ({values}): this test no longer covers stray values"
    with pytest.raises(AngioDataError, match="not binary"):
        pairs(str(images), str(tmp_path / "refused"), masks=str(masks), split="test")
    pairs(str(images), str(tmp_path / "out"), masks=str(masks), split="test", mask_threshold=127)
    assert set(np.unique(np.array(Image.open(tmp_path / "out" / "labels" / "te_23.png")))) == {0, 255}
