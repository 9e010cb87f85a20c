"""Issue 30: what a new user met in the first hour (short runs without weights, an external test
set, masks with stray grey values, the documented checks and export commands)."""

import ast
import json
import logging
import os
import re
import shlex

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from angiokit.data import AngioDataError
from angiokit.engines import ValidateEveryAndLast, WeightsReport

from .bundle_utils import run_workflow
from .conftest import REPO, shared_data
from .detection_data import write_box_datalist

# one epoch, validation every 5: before, no validation ran and models/ stayed empty
SHORT = {"max_epochs": 1, "val_interval": 5, "num_workers": 0, "warmup_epochs": 0}
TINY_RUNS = {
    "xa_vessel_seg": {"preset": "vit_tiny", "image_size": 32, "network_def#feature_size": 8, "batch_size": 2, "synthetic_length": 4, "synthetic_val_length": 2},
    "cas_iqa": {"preset": "vit_tiny", "image_size": 32, "batch_size": 4, "synthetic_cases": 16, "benchmark_size": 64},
    "xa_stenosis_det": {"preset": "vit_tiny", "image_size": 64, "network_def#pyramid_channels": 32, "batch_size": 2},
}


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """Each bundle trained for one epoch with validation every 5 (shared by the export tests)."""
    runs = {}
    for bundle, sizes in TINY_RUNS.items():
        root = tmp_path_factory.mktemp(bundle)
        extra = {"datalist": write_box_datalist(root / "boxes", n_train=2, n_val=1, n_test=1)} if bundle == "xa_stenosis_det" else {}
        runs[bundle] = (root / "run", run_workflow(bundle, ["train"], "train", root / "run", **SHORT, **sizes, **extra))
    return runs


@pytest.mark.parametrize("bundle", sorted(TINY_RUNS))
def test_a_run_shorter_than_the_validation_interval_keeps_its_weights(bundle, short_runs):
    root, wf = short_runs[bundle]
    weights = root / "models" / "model.pt"
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


# ---- the READMEs' check and export commands, run as documented ----------------------------------


def documented(bundle: str, tool: str, needle: str = "") -> list:
    """The `python -m monai.bundle TOOL ...` commands of a bundle README's code blocks that
    contain ``needle``, as argument lists ($BUNDLE resolved)."""
    text = (REPO / "bundles" / bundle / "docs" / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    found = [shlex.split(line.replace("$BUNDLE", f"bundles/{bundle}")) for line in lines if f"monai.bundle {tool} " in line and needle in line]
    return [argv[argv.index(tool) + 1:] for argv in found]


def as_kwargs(args: list, root=None) -> dict:
    """CLI arguments -> the keyword arguments fire gives MONAI's script (literal values parsed;
    R, the README's bundle root, replaced by ``root``)."""
    kwargs = {"net_id": args[0]}
    for key, value in zip(args[1::2], args[2::2]):
        assert key.startswith("--"), args
        if root is not None and (value == "R" or value.startswith("R/")):
            value = str(root) + value[1:]
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        kwargs[key[2:]] = os.path.join(REPO, value) if key in ("--meta_file", "--config_file") else value
    return kwargs


CHECK_SIZES = {"xa_vessel_seg": {"preset": "vit_tiny"}, "cas_iqa": {"preset": "vit_tiny"}, "xa_stenosis_det": {"preset": "vit_tiny", "network_def#pyramid_channels": 16}}


@pytest.mark.parametrize("bundle", sorted(CHECK_SIZES))
def test_the_documented_network_check_with_a_size_override_passes(bundle):
    from monai.bundle import verify_net_in_out

    commands = documented(bundle, "verify_net_in_out", "--image_size")
    assert len(commands) == 1, f"{bundle}'s README gives no verify_net_in_out command with a size override"
    verify_net_in_out(**as_kwargs(commands[0]), **CHECK_SIZES[bundle])  # raises on a mismatch


def test_a_frame_of_the_wrong_size_is_refused_with_the_size_the_network_takes():
    from angiokit.networks import ViTSegmenter

    net = ViTSegmenter(preset="vit_tiny", img_size=64, feature_size=8)
    with pytest.raises(ValueError, match="takes 64x64 frames.*got 32x32.*spatial_shape"):
        net(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("bundle", sorted(TINY_RUNS))
def test_the_documented_export_gives_the_bundles_outputs(bundle, short_runs):
    from monai.bundle import ckpt_export

    from angiokit.engines.inferers import ResizeInferer
    from angiokit.metrics.correlation import predicted_scores
    from angiokit.networks import load_network

    root, _ = short_runs[bundle]
    commands = documented(bundle, "ckpt_export")
    assert len(commands) == 1, f"{bundle}'s README gives no ckpt_export command"
    kwargs = as_kwargs(commands[0], root)
    if "input_shape" in kwargs:  # the README's is for the shipped 224 px; these runs are smaller
        kwargs["input_shape"] = [1, kwargs["input_shape"][1], 32, 32]
    ckpt_export(**kwargs)
    exported = torch.jit.load(kwargs["filepath"])
    eager = load_network(str(root / "models" / "model.pt"))
    torch.manual_seed(0)
    with torch.no_grad():
        if bundle == "xa_vessel_seg":  # any frame size: the inferer's resize is inside
            frames = torch.rand(2, 1, 45, 70)
            out, expected = exported(frames), ResizeInferer(32)(frames, eager)
        elif bundle == "cas_iqa":  # traced at batch 1, used at batch 2
            frames = torch.rand(2, 3, 32, 32)
            out, expected = exported(frames), predicted_scores(eager(frames[:, :1], fluoro=frames[:, 1:2], reference=frames[:, 2:3]))
        else:
            frames = torch.rand(2, 1, 64, 64)
            out, expected = exported(frames), eager(frames)
            out, expected = torch.cat([m.flatten() for k in sorted(out) for m in out[k]]), torch.cat([m.flatten() for k in sorted(expected) for m in expected[k]])
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-5)
