"""The real stenosis detection bundle configs: tiny CPU train -> evaluate -> inference (PNG and a
DICOM cine), the encoder export into the ViT backbone, the box conventions end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from angiokit.data import write_dicom_xa
from angiokit.networks import StenosisRetinaNet, VasoMIM, export_encoder, load_network

from .bundle_utils import config, run_workflow, verify_metadata
from .conftest import REPO, free_port
from .detection_data import blob_frame, write_box_datalist

BUNDLE = "xa_stenosis_det"
# what training names (a named ViT size, the input size, a narrow pyramid); evaluation and
# inference get it from the checkpoint
NET = {"preset": "vit_tiny", "image_size": 64, "network_def#pyramid_channels": 32}
TRAIN = {**NET, "batch_size": 2, "num_workers": 0, "warmup_epochs": 1, "val_interval": 1}


def _run(names, workflow_type, root, **overrides):
    return run_workflow(BUNDLE, names, workflow_type, root, **overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("boxes")
    write_box_datalist(root, n_train=4, n_val=2, n_test=3)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("det")
    _run(["train"], "train", root, max_epochs=2, dataset_dir=str(data), **TRAIN)
    return root


def test_metadata_and_network_io_verify():
    from monai.bundle import verify_net_in_out

    verify_metadata(BUNDLE)
    # `python -m monai.bundle verify_net_in_out network_io ...`: the metadata's 512 x 512 input,
    # the finest level's classification map (3 anchors x 1 class) out
    verify_net_in_out(net_id="network_io", meta_file=str(REPO / "bundles" / BUNDLE / "configs" / "metadata.json"), config_file=config(BUNDLE, "train")[0],
                      **{"preset": "vit_tiny", "network_def#pyramid_channels": 16})


def test_train_keeps_the_best_checkpoint_with_what_built_it(trained):
    saved = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("feature_extractor.vit.blocks.") for k in saved["model"])
    spec = saved["network_spec"]
    assert spec["config"]["_target_"] == "angiokit.networks.StenosisRetinaNet" and spec["config"]["backbone"] == "vit"
    assert spec["settings"]["image_size"] == 64 and spec["settings"]["num_classes"] == 1
    assert spec["settings"]["anchor_shapes"] == [[4.0, 4.0], [3.0, 5.5], [5.5, 3.0]]  # the 512-px anchors scaled to 64
    rebuilt = load_network(str(trained / "models" / "model.pt"))  # no sizes given: they come with the weights
    assert rebuilt.vit.patch_embedding.position_embeddings.shape[1] == (64 // 16) ** 2
    assert list((trained / "eval").glob("events.out.tfevents*"))


def test_evaluate_writes_metrics_intervals_predictions_and_figures(trained, data):
    out = trained / "evaluation"
    _run(["train", "evaluate"], "train", trained, dataset_dir=str(data), output_dir=str(out), num_workers=0, n_resamples=50, figure_threshold=0.0)
    metrics = json.load(open(out / "metrics.json"))
    for key in ("mAP", "AP50", "AP75", "recall_at_1fp", "recall_at_10fp"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_images"] == 3 and metrics["num_boxes"] == 6
    low, high = metrics["AP50_interval"]
    assert low <= metrics["AP50"] <= high
    predictions = json.load(open(out / "predictions.json"))
    assert [os.path.basename(p["image"]) for p in predictions] == [f"test_{i}.png" for i in range(3)]
    # the ground truth written back is the datalist's (x = column first)
    listed = json.load(open(data / "datalist.json"))["test"]
    assert np.allclose(predictions[0]["target_boxes"], listed[0]["box"])
    for name in ("pr_curve.png", "detections.png"):
        assert (out / name).stat().st_size > 1000


def test_inference_writes_boxes_per_frame_for_pngs_and_a_dicom_cine(trained, data, tmp_path):
    rng = np.random.default_rng(3)
    frames = np.stack([blob_frame(rng, 64)[0] for _ in range(3)])
    cine = write_dicom_xa(tmp_path / "in" / "cine.dcm", frames.astype(np.uint8), pixel_spacing_mm=0.3, frame_time_ms=66.7)
    out = tmp_path / "out"
    _run(["inference"], "infer", trained, input_glob=f"{data}/images/test_0.png,{cine}", output_dir=str(out))
    still = json.load(open(out / "test_0.json"))
    assert still["image"].endswith("test_0.png") and len(still["frames"]) == 1 and "x = column" in still["box_mode"]
    doc = json.load(open(out / "cine.json"))
    assert [f["frame"] for f in doc["frames"]] == [0, 1, 2]  # one box list per frame of the cine
    for f in doc["frames"] + still["frames"]:
        assert len(f["boxes"]) == len(f["scores"]) == len(f["labels"]) == len(f["label_names"])
        assert all(0 <= s <= 1 for s in f["scores"])
    assert (out / "test_0_overlay.png").exists() and (out / "cine_overlay.png").exists()


def _tiny_encoder(path, hidden=64, layers=2):
    mae = VasoMIM(img_size=64, patch_size=16, hidden_size=hidden, mlp_dim=2 * hidden, num_layers=layers, num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, decoder_mlp_dim=64)
    return mae, export_encoder(mae, str(path))


def test_vit_backbone_loads_an_encoder_export_strictly(tmp_path):
    mae, path = _tiny_encoder(tmp_path / "encoder.pt")
    net = StenosisRetinaNet(backbone="vit", img_size=128, pyramid_channels=16, pretrained_encoder=path)  # sizes adopted from the export
    assert net.constructor["hidden_size"] == 64 and net.constructor["num_layers"] == 2
    exported = torch.load(path, weights_only=True)["encoder"]
    mine = net.vit.state_dict()
    assert set(exported) - {"cls_token"} == set(mine)  # every encoder key, nothing else
    for key, value in exported.items():
        if key == "patch_embedding.position_embeddings":
            assert mine[key].shape[1] == (128 // 16) ** 2  # resized from the 64-px grid
        elif key in mine:
            assert torch.equal(mine[key], value), key
    # an export that does not fit: refused, naming the file and what differs
    with pytest.raises(ValueError, match="encoder.pt.*hidden_size=64"):
        StenosisRetinaNet(backbone="vit", img_size=64, pyramid_channels=16, pretrained_encoder=path, hidden_size=32, mlp_dim=64, num_layers=2, num_heads=2)


def test_bundle_fine_tunes_from_an_encoder_export(tmp_path, data):
    _, path = _tiny_encoder(tmp_path / "encoder.pt")
    _run(["train"], "train", tmp_path / "b", max_epochs=1, dataset_dir=str(data), pretrained_encoder=path, **{**TRAIN, "preset": "vit_b16"})
    saved = torch.load(tmp_path / "b" / "models" / "model.pt", weights_only=True)
    assert saved["network_spec"]["config"]["hidden_size"] == 64  # not ViT-B: the encoder's sizes
    assert "pretrained_encoder" not in saved["network_spec"]["config"]


def test_resnet_fpn_config_trains(tmp_path, data):
    _run(["train", "resnet_fpn"], "train", tmp_path, max_epochs=1, dataset_dir=str(data), resnet_depth=18, **TRAIN)
    net = load_network(str(tmp_path / "models" / "model.pt"))
    assert net.backbone == "resnet" and net.vit is None
    assert set(net.feature_extractor(torch.zeros(1, 1, 64, 64))) == {"0", "1", "pool"}


def test_augmentation_keeps_boxes_on_the_stenoses(tmp_path):
    """The training pipeline (resize, scale jitter, flips, quarter turns, intensity) on a frame
    whose only bright pixels are two elongated "stenoses" (bright, so the zero padding of a
    zoom-out cannot pass for one): after any draw each box still frames them, and none of their
    pixels lies outside the boxes. A non-square frame and elongated blobs catch a swapped axis
    order."""
    from monai.bundle import ConfigParser

    from angiokit.data import write_png

    parser = ConfigParser()
    parser.read_config(config(BUNDLE, "train")[0])
    parser["image_size"] = 64
    transform = parser.get_parsed_content("train#preprocessing")
    yy, xx = np.mgrid[0:48, 0:80]
    frame = np.full((48, 80), 60, np.uint8)
    ellipses = [((12, 20), (4, 10)), ((34, 60), (9, 3))]  # (centre row, col), (radius rows, cols)
    boxes = []
    for (cy, cx), (ry, rx) in ellipses:
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        frame[inside] = 250
        rows, cols = np.where(inside)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])  # x = column first
    item = {"image": write_png(tmp_path / "f.png", frame), "box": boxes, "label": [0, 0]}
    for seed in range(12):
        transform.set_random_state(seed)
        out = transform(dict(item))
        image, got = out["image"][0].numpy(), out["box"].numpy()
        assert image.shape == (64, 64) and got.shape[1] == 4
        marked = image > 0.5 * image.max()
        covered = np.zeros_like(marked)
        for r1, c1, r2, c2 in got:  # array-axis order inside the bundle
            region = marked[int(r1) : int(np.ceil(r2)), int(c1) : int(np.ceil(c2))]
            assert region.mean() > 0.3, (seed, r1, c1, r2, c2)  # an ellipse fills pi/4 of its box (less once resampled)
            covered[max(int(r1) - 1, 0) : int(np.ceil(r2)) + 1, max(int(c1) - 1, 0) : int(np.ceil(c2)) + 1] = True
        assert (marked & ~covered).sum() <= 2, seed


def test_detector_inferer_scales_boxes_back_to_the_input_frame():
    """A detector that always finds the same box in its 64 x 64 input: on a 128 x 256 frame the
    box comes back scaled by (2, 4) along (rows, columns)."""
    from angiokit.engines import DetectorInferer

    class Fixed(torch.nn.Module):
        target_box_key, target_label_key, pred_score_key = "boxes", "labels", "labels_scores"

        def __init__(self):
            super().__init__()
            self.network, self.seen = None, None

        def forward(self, images):
            self.seen = tuple(images.shape[-2:])
            return [{"boxes": torch.tensor([[8.0, 4.0, 16.0, 12.0]]), "labels": torch.tensor([0]), "labels_scores": torch.tensor([0.9])} for _ in images]

    detector, net = Fixed(), torch.nn.Identity().eval()
    out = DetectorInferer(detector, roi_size=64)([torch.zeros(1, 128, 256)], net)
    assert detector.seen == (64, 64)
    assert out[0]["boxes"].tolist() == [[16.0, 16.0, 32.0, 48.0]]
    cine = DetectorInferer(detector, roi_size=64, cine=True)([torch.zeros(3, 64, 64)], net)
    assert len(cine[0]) == 3  # one prediction per frame
    with pytest.raises(ValueError, match="cine=True"):
        DetectorInferer(detector, roi_size=64)([torch.zeros(3, 64, 64)], net)


def test_no_datalist_is_a_clear_error(tmp_path):
    from angiokit.data import AngioDataError
    from angiokit.data.detection import detection_items

    with pytest.raises(AngioDataError, match="box datalist"):
        detection_items("", ["training"])
    bad = tmp_path / "datalist.json"
    bad.write_text(json.dumps({"training": [{"image": "x.png", "box": [[0, 0, 4, 4]], "label": []}]}))
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(AngioDataError, match="1 boxes but 0 labels"):
        detection_items(str(bad), ["training"])


def test_two_process_gloo_ddp_finishes(tmp_path, data):
    overrides = sum(([f"--{k}", str(v)] for k, v in TRAIN.items()), [])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "monai.bundle", "run",
           "--config_file", json.dumps(config(BUNDLE, "train", "multi_gpu_train")), "--bundle_root", str(tmp_path), "--dataset_dir", str(data), "--max_epochs", "1", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").exists()


def test_layer_decay_reaches_the_vit_below_the_detector():
    """angiokit.optim finds the ViT under ``feature_extractor.vit.``: ViTDet's layer-wise decay
    applies to the detector's backbone, not only to networks holding ``vit.`` at the top."""
    from angiokit.optim import param_groups

    net = StenosisRetinaNet(backbone="vit", img_size=64, pyramid_channels=16, preset="vit_tiny")  # 2 blocks
    groups = param_groups(net, 0.1, (), lr=1.0, layer_decay=0.5)
    by_scale = {}
    for g in groups:
        by_scale.setdefault(g["lr_scale"], 0)
        by_scale[g["lr_scale"]] += sum(p.numel() for p in g["params"])
    # patch embedding 0.5 ** 3, block 0 0.5 ** 2, block 1 0.5, the rest (final norm, pyramid, heads) 1
    assert sorted(by_scale) == [0.125, 0.25, 0.5, 1.0]
    head = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("feature_extractor.vit.") or n.startswith("feature_extractor.vit.norm"))
    assert by_scale[1.0] == head


def test_report_tells_found_from_boxed_like_the_annotators(tmp_path):
    """apps.stenosis_det's looser-IoU AP: a detection on the stenosis whose box overlaps the
    annotated one at IoU 0.4 counts at IoU 0.1 and 0.3, not at 0.5; box sizes per split."""
    from apps.stenosis_det import ap_at_looser_iou, box_sizes

    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([0])}
    shifted = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 4.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}  # IoU 0.4
    assert ap_at_looser_iou([shifted], [target]) == pytest.approx({"AP@0.1": 1.0, "AP@0.3": 1.0, "AP@0.5": 0.0})
    path = write_box_datalist(tmp_path, n_train=2, n_val=1, n_test=1)
    sizes = box_sizes(path)
    assert [sizes[s]["frames"] for s in ("training", "validation", "test")] == [2, 1, 1]
    assert sizes["training"]["boxes"] == 4 and sizes["training"]["p10"] <= sizes["training"]["median"] <= sizes["training"]["p90"]
