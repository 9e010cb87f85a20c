"""The real vessel segmentation bundle configs: tiny CPU train -> evaluate -> inference, DICOM SEG."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch

from angiokit.data import read_angiogram, to_uint, write_dicom_xa, write_png
from angiokit.data.dicom_seg import read_dicom_seg
from angiokit.networks import VasoMIM, export_encoder, load_network

from .bundle_utils import config, run_workflow, verify_metadata, workflow
from .conftest import REPO, free_port

# what training names (a named ViT size, the input size, a narrow UNETR decoder); evaluation and
# inference get it from the checkpoint
NET = {"preset": "vit_tiny", "image_size": 32, "network_def#feature_size": 8}
TRAIN = {**NET, "batch_size": 2, "synthetic_length": 6, "synthetic_val_length": 2, "num_workers": 0, "warmup_epochs": 1, "val_interval": 1}


def _run(names, workflow_type, root, **overrides):
    return run_workflow("xa_vessel_seg", names, workflow_type, root, **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    _run(["train"], "train", root, max_epochs=2, **TRAIN)
    return root


def test_metadata_and_network_io_verify():
    from monai.bundle import verify_net_in_out

    verify_metadata("xa_vessel_seg")  # raises on a field the schema rejects
    # what `python -m monai.bundle verify_net_in_out network_def ...` runs, in-process
    verify_net_in_out(net_id="network_def", meta_file=str(REPO / "bundles/xa_vessel_seg/configs/metadata.json"), config_file=config("xa_vessel_seg", "train")[0],
                      **{"network_def#hidden_size": 48, "network_def#num_heads": 2, "network_def#mlp_dim": 96})


def test_train_keeps_the_best_checkpoint(trained):
    saved = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("vit.blocks.") for k in saved["model"])
    # beside the weights, what built them: the network at its trained sizes, and the bundle's settings
    assert saved["network_spec"]["config"]["_target_"] == "angiokit.networks.ViTSegmenter"
    assert saved["network_spec"]["settings"] == {"image_size": 32, "num_classes": 2}
    rebuilt = load_network(str(trained / "models" / "model.pt"))  # no sizes given: they come with the weights
    assert rebuilt.vit.patch_embedding.position_embeddings.shape[1] == (32 // 16) ** 2
    assert list((trained / "eval").glob("events.out.tfevents*"))


def test_evaluate_writes_per_image_scores_summary_and_overlays(trained):
    out = trained / "evaluation"
    _run(["train", "evaluate"], "train", trained, output_dir=str(out), **{"num_workers": 0, "validate#dataset#synthetic_length": 3})
    rows = list(csv.reader(open(out / "val_cldice_raw.csv")))
    assert rows[0][0] == "filename" and len(rows) == 4
    summary = {r[0]: float(r[1]) for r in csv.reader(open(out / "metrics.csv"), delimiter="\t") if len(r) > 1} or {
        line.split(",")[0]: float(line.split(",")[1]) for line in open(out / "metrics.csv") if "," in line}
    assert 0.0 <= summary["val_mean_dice"] <= 1.0 and 0.0 <= summary["val_cldice"] <= 1.0
    assert len(list((out / "overlays").glob("*_overlay.png"))) == 3


def test_inference_png_nifti_and_dicom_seg_agree(trained, tmp_path, small_cine):
    inputs = tmp_path / "inputs"
    write_png(inputs / "still.png", to_uint(small_cine.image[-1], 8))
    write_dicom_xa(inputs / "run.dcm", to_uint(small_cine.image[:4], 8), 0.3, 66.7)
    out = tmp_path / "pred"
    wf = _run(["inference"], "infer", trained, output_dir=str(out), dataset_dir=str(inputs))
    pred = wf.evaluator.state.output["pred"]  # the last input, still.png: [1, C, H, W] (not decollated)
    assert torch.allclose(pred.sum(1), torch.ones(1, 128, 128), atol=1e-4)  # class probabilities per pixel
    image = wf.parser.get_parsed_content("preprocessing")({"image": str(inputs / "still.png")})["image"]
    with torch.no_grad():
        logits = wf.parser.get_parsed_content("inferer")(image[None], wf.parser.get_parsed_content("network").eval())
    expected = logits.argmax(1)[0].numpy().astype(bool)
    names = sorted(p.name for p in out.iterdir())
    assert "still_seg.png" in names and "still_seg.nii.gz" in names and "run_seg.dcm" in names
    still = read_angiogram(out / "still_seg.png").frames
    assert still.shape == (1, 128, 128)  # the input's size
    assert np.array_equal(still[0] > 0, expected)  # the network's classes, as written
    seg = pydicom.dcmread(out / "run_seg.dcm")
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == 4
    source = pydicom.dcmread(inputs / "run.dcm")
    ref = seg.PerFrameFunctionalGroupsSequence[2].DerivationImageSequence[0].SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID and ref.ReferencedFrameNumber == 3
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    frames = read_dicom_seg(str(out / "run_seg.dcm"))
    for t in range(4):
        png = read_angiogram(out / f"run_f{t:03d}_seg.png").frames[0] > 0
        assert np.array_equal(frames[t], png)
    assert np.array_equal(read_angiogram(out / "run_seg.nii.gz").frames > 0, frames)


def test_frangi_overlay_writes_a_checkpoint_that_the_evaluate_config_scores(tmp_path):
    """configs/frangi.json: the classical Frangi + Otsu segmenter as the bundle's network; its
    "training" writes model.pt (no weights, what builds it), scored by the same evaluate config."""
    def run(names, **overrides):  # not _run: the trainer's properties cannot be built with nothing to optimise
        wf = workflow("xa_vessel_seg", names, "train", bundle_root=str(tmp_path), **overrides)
        wf.initialize()
        wf.run()

    run(["train", "frangi"])
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert saved["model"] == {} and saved["network_spec"]["config"]["_target_"] == "angiokit.networks.VesselnessThresholdSegmenter"
    assert saved["network_spec"]["settings"] == {"image_size": 512, "num_classes": 2}  # Frangi's scales are pixels of a 512 px frame
    out = tmp_path / "evaluation"
    run(["train", "evaluate"], output_dir=str(out), **{"num_workers": 0, "validate#dataset#synthetic_length": 2})
    summary = dict(row for row in csv.reader(open(out / "metrics.csv")) if len(row) == 2)
    assert float(summary["val_mean_dice"]) > 0.15  # finds vessels with no training


def test_unet_baseline_and_pretrained_encoder_configs_train(tmp_path):
    unet = {k: v for k, v in TRAIN.items() if not k.startswith("network_def#")}
    _run(["train", "unet"], "train", tmp_path / "unet", max_epochs=1, **unet)
    assert (tmp_path / "unet" / "models" / "model.pt").exists()
    mae = VasoMIM("vit_s16", img_size=32, hidden_size=48, num_heads=2, mlp_dim=96, num_layers=12, decoder_num_layers=1)
    encoder = export_encoder(mae, str(tmp_path / "encoder.pt"))
    wf = workflow("xa_vessel_seg", ["train"], "train", bundle_root=str(tmp_path / "vit"), max_epochs=1, pretrained_encoder=encoder, **TRAIN)
    wf.initialize()
    net = wf.parser.get_parsed_content("network")
    assert torch.equal(net.vit.blocks[7].mlp.linear2.weight, mae.blocks[7].mlp.linear2.weight)


def test_two_process_gloo_ddp_finishes(tmp_path):
    overrides = sum(([f"--{k}", str(v)] for k, v in TRAIN.items()), [])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "monai.bundle", "run",
           "--config_file", json.dumps(config("xa_vessel_seg", "train", "multi_gpu_train")), "--bundle_root", str(tmp_path), "--max_epochs", "1", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").exists()


def test_standard_dataset_ids_take_a_datastore_list(tmp_path, small_frames):
    """MONAI Label's bundle train task overrides train#dataset#data / validate#dataset#data with
    the datastore's {"image", "label"} list (labels 0/1 PNG as annotators save them)."""
    from angiokit.data import write_png

    data = []
    for i, s in enumerate(small_frames[:3]):
        data.append({"image": write_png(tmp_path / "ds" / f"f{i}.png", to_uint(s.image[0], 8)), "label": write_png(tmp_path / "ds" / "labels" / f"f{i}.png", s.vessel[0])})
    wf = workflow("xa_vessel_seg", ["train"], "train", bundle_root=str(tmp_path / "b"), max_epochs=1, **{**TRAIN, "train#dataset#data": data[:2], "validate#dataset#data": data[2:]})
    wf.initialize()
    assert len(wf.parser.get_parsed_content("train#dataset")) == 2
    wf.run()
    assert (tmp_path / "b" / "models" / "model.pt").exists()
