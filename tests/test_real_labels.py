"""apps.real_labels in its --quick form (plumbing: pools, DCA1 rows, intervals, figures), its
pool sampling, and the paired bootstrap interval of a difference."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from angiokit.metrics import paired_difference

from .conftest import shared_data
from .test_experiment_apps import _run


def test_paired_difference_interval_holds_the_mean_and_reads_the_pairing():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, 40)
    a = {f"f{i}": v + 0.05 + rng.normal(0, 0.01) for i, v in enumerate(base)}
    b = {f"f{i}": v for i, v in enumerate(base)}
    d = paired_difference(a, b)
    assert d["n"] == 40 and d["low"] < d["mean"] < d["high"]
    assert 0.04 < d["low"] and d["high"] < 0.06  # paired: the frames' own spread (0.4-0.8) cancels
    # unpaired frames of b shuffled: the same means, but the interval widens to the frames' spread
    shuffled = dict(zip(b, rng.permutation(list(b.values()))))
    wide = paired_difference(a, shuffled)
    assert wide["high"] - wide["low"] > 5 * (d["high"] - d["low"])
    assert paired_difference({"x": 1.0, "y": 0.5}, {"x": 0.5, "y": 0.0}) == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 2}
    with pytest.raises(ValueError, match="share 0"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def test_real_labels_quick_trains_scores_and_reports_dca1(tmp_path):
    shared_data("dca1")
    out = tmp_path / "real_labels"
    _run(["apps.real_labels", "--out", str(out), "--quick", "--tasks", "dca1", "--models", "unet,dynunet,vasomim_adapter"])
    doc = json.loads((out / "results.json").read_text())
    dca1 = doc["results"]["dca1"]
    assert set(dca1) == {"frangi", "unet", "dynunet", "vasomim_adapter"}
    for scores in dca1.values():
        dice = scores["val_mean_dice"]
        assert len(dice) == 3 and all(name.startswith("te_") for name in dice)  # test frames only
        assert all(0.0 <= v <= 1.0 for v in dice.values())
    # the pools hold real frames of every unlabelled source and never a DCA1 or XCAD frame
    pools = json.loads((out / "pools.json").read_text())
    assert set(pools) == {"arcade_train_pixels", "arcade_test_pixels", "kragujevac", "adsd", "dicom_xa", "synthetic"}
    assert all(p["frames"] > 0 and p["megapixels"] > 0 for p in pools.values())
    assert not any("dca1" in p["source"] or "xcad" in p["source"] for p in pools.values())
    md = (out / "results.md").read_text()
    assert "| ViT + UNet adapter, VasoMIM-pretrained | 3 |" in md
    assert "DynUNet (nnU-Net-style) from scratch − U-Net (MONAI BasicUNet) from scratch | 3 |" in md  # a paired interval row
    assert (out / "figures" / "dca1_overlays.png").stat().st_size > 10_000
    # the checkpoint of the adapter run rebuilds the adapter (no flags) and the DynUNet its class
    import torch

    spec = torch.load(out / "dca1" / "vasomim_adapter" / "models" / "model.pt", weights_only=True)["network_spec"]["config"]
    assert spec["decoder"] == "unet_adapter"
    dyn = torch.load(out / "dca1" / "dynunet" / "models" / "model.pt", weights_only=True)["network_spec"]["config"]
    assert dyn["_target_"].endswith("DynUNet")


def test_sample_folder_links_the_first_frames_and_one_cine(tmp_path):
    from apps.real_labels import sample_folder

    src = tmp_path / "src"
    src.mkdir()
    for name in ("b.png", "a.png", "c.jpg", "notes.txt"):
        (src / name).write_bytes(b"x")
    assert sample_folder(str(src), None, str(tmp_path / "s0")) == str(src)
    linked = sample_folder(str(src), 2, str(tmp_path / "s1"))
    assert sorted(os.listdir(linked)) == ["a.png", "b.png"] and os.path.islink(os.path.join(linked, "a.png"))
    (tmp_path / "cines").mkdir()
    for name in ("x.dcm", "y.dcm"):
        (tmp_path / "cines" / name).write_bytes(b"x")
    assert os.listdir(sample_folder(str(tmp_path / "cines"), 5, str(tmp_path / "s2"))) == ["x.dcm"]
