"""The stenosis detector served by the MONAI Label app (model ``stenosis_det``), for real: a
server on loopback with a checkpoint this test writes, answering ``POST /infer/stenosis_det`` with
boxes for a PNG frame and one box list per frame of a DICOM XA cine; and, with no checkpoint, a
clear HTTP 503 (never a 500).

The checkpoint is a tiny untrained ``StenosisRetinaNet`` made to answer predictably: its
classification bias is high (every anchor scores about sigmoid(4) = 0.98, so boxes come back)
and its box regression is zero (every box is an anchor, resized back to the frame). Frames are
64 rows x 96 columns, so boxes with swapped axes would leave the frame or have the wrong shape.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from angiokit.data import write_dicom_xa, write_png
from angiokit.engines.detection import BOX_MODE
from angiokit.networks import StenosisRetinaNet, build_detector, load_network, save_checkpoint
from angiokit.networks.detection import anchor_generator

from .conftest import running_server


requests = pytest.importorskip("requests")

ROWS, COLS = 64, 96  # not square: swapped axes are caught
SIZE = 64  # the network's input size
ANCHORS = [[4, 4], [3, 6], [6, 3]]  # array-axis order ([rows, columns]) at the stride-8 level
TINY = {"preset": "vit_tiny", "image_size": 32}  # what the other models' first starts build
NO_DETECTOR = "no trained stenosis detector yet: start the server with --conf stenosis_det_checkpoint"


def _checkpoint(path) -> str:
    torch.manual_seed(0)
    net = StenosisRetinaNet(backbone="vit", preset="vit_tiny", img_size=SIZE, pyramid_channels=32)
    with torch.no_grad():
        net.classification_head.cls_logits.bias.fill_(4.0)  # every anchor above the detector's threshold
        net.regression_head.bbox_reg.weight.zero_()  # no box deltas: every box is its anchor
        net.regression_head.bbox_reg.bias.zero_()
    return save_checkpoint(net, str(path), "0.1.0", image_size=SIZE, num_classes=1, anchor_shapes=ANCHORS, label_names={"0": "stenosis"})


def _frames(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(20, 235, size=(n, ROWS, COLS)).astype(np.uint8)




def _studies(root):
    studies = root / "studies"
    write_png(studies / "frame.png", _frames(0, 1)[0])
    write_dicom_xa(studies / "run.dcm", _frames(1, 3), 0.3, 66.7)
    return studies


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``--conf models all`` with a stenosis detector checkpoint (and tiny first starts of the others)."""
    root = tmp_path_factory.mktemp("monailabel_det")
    checkpoint = _checkpoint(root / "det.pt")
    studies = _studies(root)
    write_dicom_xa(root / "upload.dcm", _frames(2, 3), 0.3, 66.7)  # sent as a file, not a study
    conf = {"models": "all", "model_dir": str(root / "model"), "stenosis_det_checkpoint": checkpoint, "vessel_seg_config": json.dumps(TINY), "quality_config": json.dumps(TINY)}
    with running_server(root, studies, conf) as (url, log):
        yield {"url": url, "root": root, "checkpoint": checkpoint, "log": log}


def _infer(server, image=None, file=None, **params):
    files = {"file": (file.name, file.read_bytes())} if file is not None else None
    r = requests.post(f"{server['url']}/infer/stenosis_det", params={"image": image} if image else {}, files=files, data={"params": json.dumps({"device": "cpu", **params})})
    assert r.status_code == 200, r.text + server["log"].read_text()[-3000:]
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def _check_frame(frame: dict, detections_per_img: int) -> None:
    """Boxes inside the 64 x 96 frame with x = column first, anchors resized back, scores in [0, 1]."""
    boxes, scores, labels = np.array(frame["box"]).reshape(-1, 4), np.array(frame["score"]), frame["label"]
    assert 0 < len(boxes) <= detections_per_img and len(scores) == len(labels) == len(boxes)
    assert set(labels) == {0}
    assert ((scores >= 0) & (scores <= 1)).all() and (np.diff(scores) <= 0).all()  # most confident first
    x1, y1, x2, y2 = boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= COLS).all() and (y2 <= ROWS).all() and (x2 > x1).all() and (y2 > y1).all()
    assert x2.max() > ROWS  # boxes reach the columns past the 64th: x is the column
    # away from the borders (not clipped) every box is an anchor of the 64-px network, its rows
    # kept (64 -> 64) and its columns stretched by 96 / 64: (width, height) in x-first order
    expected = {(float(c2 - c1) * COLS / SIZE, float(r2 - r1)) for level in anchor_generator(ANCHORS).cell_anchors for r1, c1, r2, c2 in level.tolist()}
    inner = (x1 > 0) & (y1 > 0) & (x2 < COLS) & (y2 < ROWS)
    shapes = {(round(w, 2), round(h, 2)) for w, h in zip((x2 - x1)[inner], (y2 - y1)[inner])}
    assert shapes and shapes <= expected, (shapes, expected)
    assert any(w != h for w, h in shapes)  # the stretch shows: not a set the swap would also give


@pytest.fixture(scope="module")
def detections_per_img(server):
    return build_detector(load_network(server["checkpoint"]), base_anchor_shapes=ANCHORS).box_selector.detections_per_img


def test_info_lists_the_detector_beside_the_other_models(server):
    info = requests.get(f"{server['url']}/info/").json()
    assert set(info["models"]) == {"vessel_seg", "quality", "stenosis_det"}
    det = info["models"]["stenosis_det"]
    assert det["type"] == "detection" and det["labels"] == {"stenosis": 0} and det["dimension"] == 2
    assert det["serving"] == f"trained StenosisRetinaNet (vit_tiny, 64 px) from {server['checkpoint']}"
    assert det["provenance"]["trained"] and det["config"]["min_score"] == 0.0
    assert info["models"]["vessel_seg"]["type"] == "segmentation" and info["models"]["quality"]["type"] == "classification"
    assert set(info["trainers"]) == {"vessel_seg", "quality"}  # no detector training in the app


def test_a_png_frame_gives_boxes_in_its_pixels_x_first(server, detections_per_img):
    result = _infer(server, image="frame")
    assert result["frame_size"] == {"width": COLS, "height": ROWS} and result["box_mode"] == BOX_MODE
    assert result["label_names"] == {"stenosis": 0} and result["network"] == "StenosisRetinaNet"
    assert result["model"]["checkpoint"] == server["checkpoint"]
    assert len(result["frames"]) == 1 and result["frame"] == 0
    assert {k: result[k] for k in ("box", "score", "label")} == {k: result["frames"][0][k] for k in ("box", "score", "label")}
    _check_frame(result["frames"][0], detections_per_img)

    threshold = float(np.median(result["score"]))
    kept = _infer(server, image="frame", min_score=threshold)
    assert 0 < len(kept["box"]) <= len(result["box"]) and min(kept["score"]) >= threshold


def test_asking_for_a_label_file_is_a_clear_400(server):
    """A detector writes no label file: ``output=image`` is refused with a reason (MONAI Label
    itself would answer a bare 500)."""
    r = requests.post(f"{server['url']}/infer/stenosis_det", params={"image": "frame", "output": "image"})
    assert r.status_code == 400 and "output=json" in r.json()["detail"]


@pytest.mark.parametrize("source", ["study", "upload"])
def test_a_dicom_cine_gives_one_box_list_per_frame(server, detections_per_img, source):
    result = _infer(server, image="run") if source == "study" else _infer(server, file=server["root"] / "upload.dcm")
    assert [f["frame"] for f in result["frames"]] == [0, 1, 2]
    for frame in result["frames"]:
        _check_frame(frame, detections_per_img)
    best = result["frames"][result["frame"]]  # the top-level boxes: the frame with the most confident box
    assert (result["box"], result["score"], result["label"]) == (best["box"], best["score"], best["label"])
    assert max(best["score"]) == max(max(f["score"]) for f in result["frames"])


def test_without_a_checkpoint_the_detector_answers_503_saying_what_it_needs(tmp_path):
    from monailabel_app.lib.configs import ALL_WHEN

    studies = _studies(tmp_path)
    assert not ALL_WHEN["stenosis_det"](str(tmp_path / "model"), {})
    assert ALL_WHEN["stenosis_det"](str(tmp_path / "model"), {"stenosis_det_checkpoint": "det.pt"})
    # named in --conf models: listed, saying it has no detector; every request a 503
    with running_server(tmp_path / "named", studies, {"models": "stenosis_det", "model_dir": str(tmp_path / "model")}) as (url, log):
        info = requests.get(f"{url}/info/").json()
        assert info["models"]["stenosis_det"]["type"] == "detection" and "no trained stenosis detector" in info["models"]["stenosis_det"]["serving"]
        assert info["trainers"] == {}
        for image in ("frame", "run"):
            r = requests.post(f"{url}/infer/stenosis_det", params={"image": image}, data={"params": json.dumps({"device": "cpu"})})
            assert r.status_code == 503 and r.json()["detail"].startswith(NO_DETECTOR), r.text
    # --conf models all: left out until it has a detector; a request says so
    with running_server(tmp_path / "all", studies, {"models": "all", "model_dir": str(tmp_path / "model"), "vessel_seg_config": json.dumps(TINY), "quality_config": json.dumps(TINY)}) as (url, log):
        assert set(requests.get(f"{url}/info/").json()["models"]) == {"vessel_seg", "quality"}
        r = requests.post(f"{url}/infer/stenosis_det", params={"image": "frame"}, data={"params": json.dumps({"device": "cpu"})})
        assert r.status_code == 503 and r.json()["detail"].startswith(f"stenosis_det is not served: {NO_DETECTOR}"), r.text
