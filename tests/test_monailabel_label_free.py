"""The annotation app's first start serves the label-free segmenter (issue 31): a model trained on
synthetic frames and unlabelled real frames, never a real label. On the real XCAD frames its labels
are those of the bundle's own inference with the same checkpoint."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil

import numpy as np
import pytest

from angiokit.data import read_angiogram
from angiokit.metrics import dice_score

from .bundle_utils import run_workflow, workflow
from .conftest import shared_data
from .test_monailabel_app import _start
from .test_seg_bundle import TRAIN



def _sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def label_free_checkpoint(tmp_path_factory):
    # unlabelled frames of a training split (ARCADE stenosis train), never a frame tested on
    unlabelled = sorted(glob.glob(str(shared_data("arcade_stenosis_train", "images") / "*.png")))[:4]
    root = tmp_path_factory.mktemp("label_free")
    run_workflow("xa_vessel_seg", ["train", "label_free"], "train", root, max_epochs=1, real_unlabelled=",".join(unlabelled), **TRAIN)
    return str(root / "models" / "model.pt")


def test_first_start_serves_the_label_free_model_and_its_labels_on_xcad(tmp_path, label_free_checkpoint):
    from monailabel_app.lib.configs.vessel_seg import LABEL_FREE_FILE
    from monailabel_app.lib.weights import provenance

    xcad = shared_data("xcad_samples")
    frames = sorted(glob.glob(str(xcad / "images" / "*.png")))[:3]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    default = model_dir / LABEL_FREE_FILE  # where the first start looks without --conf
    shutil.copy(label_free_checkpoint, default)
    task = _start(model_dir, {})  # no checkpoint given: the first start
    served = provenance(task.bundle_path)
    assert served["source"] == "label_free" and served["trained"] and served["checkpoint_sha256"] == _sha256(label_free_checkpoint), served
    assert served["serving"].startswith("label-free ViTSegmenter") and "no real label" in served["serving"]

    # the app's labels of the XCAD frames vs the bundle's own inference with the same checkpoint
    inputs, out = tmp_path / "bundle_in", tmp_path / "bundle_out"
    inputs.mkdir()
    for f in frames:
        shutil.copy(f, inputs / os.path.basename(f))
    run = workflow("xa_vessel_seg", ["inference"], "infer", bundle_root=str(tmp_path / "bundle"), checkpoint=label_free_checkpoint, output_dir=str(out),
                   dataset_dir=str(inputs), output_formats=["png"], device="$torch.device('cpu')")
    run.initialize()
    run.run()
    run.finalize()
    infer = task.infer()["vessel_seg"]
    for f in frames:
        label_path, result = infer({"image": f, "device": "cpu"})
        app_label = read_angiogram(label_path).frames[0] > 0
        stem = os.path.splitext(os.path.basename(f))[0]
        bundle_label = read_angiogram(out / f"{stem}_seg.png").frames[0] > 0
        truth = read_angiogram(xcad / "masks" / os.path.basename(f)).frames[0] > 127
        assert app_label.shape == truth.shape
        agreement = (app_label == bundle_label).mean()
        print(f"{stem}: app Dice {dice_score(app_label, truth):.3f}, bundle Dice {dice_score(bundle_label, truth):.3f}, agreement {agreement:.4f}")
        assert agreement > 0.999 and abs(dice_score(app_label, truth) - dice_score(bundle_label, truth)) < 0.005
        assert result["model"]["source"] == "label_free"

    # a restart keeps the working copy; a named label-free file that is missing is an error
    assert provenance(_start(model_dir, {}).bundle_path)["source"] == "label_free"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        _start(tmp_path / "other", {"vessel_seg_label_free": str(tmp_path / "missing.pt")})


def test_without_a_label_free_model_the_first_start_is_classical(tmp_path):
    from monailabel_app.lib.weights import provenance

    assert provenance(_start(tmp_path / "model", {}).bundle_path)["source"] == "classical"
