"""The MONAI Label app, served for real: ``monailabel start_server`` in a subprocess on
127.0.0.1 with tiny models and a folder of synthetic angiograms, driven through the REST calls
3D Slicer's MONAI Label plugin makes. The main server starts with no checkpoint (the classical
segmenter, then the tiny ViT its first training trains); the models ``apps.demo`` trains are
served with no size flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from angiokit.data import read_angiogram, to_uint, write_dicom_xa, write_mask_png, write_nifti, write_png
from angiokit.data.adapters.common import load_split
from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.metrics import dice_score

from apps._server import wait_for_http

from .conftest import SHARED_DATA, free_port, running_server, shared_data

requests = pytest.importorskip("requests")

# what a first training trains (named sizes) and how; checkpoints carry their own sizes
SEG = {"preset": "vit_tiny", "image_size": 32, "batch_size": 2, "num_workers": 0}
IQA = {"preset": "vit_tiny", "image_size": 32, "batch_size": 2, "num_workers": 0}
FIRST_START = "classical Frangi + Otsu (no training yet)"
ROWS, COLS = 40, 64  # not square: a transposed label would not fit


def _frame(seed: int, frames: int = 1):
    s = synthesize(SynthConfig(size=COLS, frames=frames), seed=seed)
    return to_uint(s.image[:, :ROWS], 8), (s.vessel[:, :ROWS] > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    truth = {}
    for i in range(4):
        image, vessel = _frame(i)
        write_png(studies / f"frame{i}.png", image[0])
        truth[f"frame{i}"] = vessel[0]
    cine, _ = _frame(7, frames=4)
    write_dicom_xa(studies / "run.dcm", cine, 0.3, 66.7)
    synthetic, _ = _frame(11)
    write_png(studies / "synthetic.png", synthetic[0])
    write_png(studies / "synthetic_aux_fluoro.png", _frame(12)[0][0])
    write_png(studies / "synthetic_aux_reference.png", _frame(13)[0][0])
    conf = {"models": "all", "model_dir": str(root / "model"), "vessel_seg_config": json.dumps(SEG), "quality_config": json.dumps(IQA), "epistemic_passes": "2"}
    with running_server(root, studies, conf) as (url, log):
        yield {"url": url, "root": root, "studies": studies, "truth": truth, "log": log}




def _wait(server, kind: str, timeout: float = 300) -> dict:
    """Poll /train/ or /scoring/ until the latest task ends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = requests.get(f"{server['url']}/{kind}/").json()
        if task and task.get("status") in ("DONE", "ERROR", "STOPPED"):
            return task
        time.sleep(1)
    pytest.fail(f"{kind} did not finish in {timeout} s:\n{server['log'].read_text()[-4000:]}")


def _info(server, image: str) -> dict:
    return requests.get(f"{server['url']}/datastore/image/info", params={"image": image}).json()


def _put_label(server, image: str, path, tag: str = "final"):
    with open(path, "rb") as f:
        return requests.put(f"{server['url']}/datastore/label", params={"image": image, "tag": tag}, files={"label": (os.path.basename(path), f)})


def test_info_lists_models_strategies_and_scoring(server):
    info = requests.get(f"{server['url']}/info/").json()
    assert set(info["models"]) == {"vessel_seg", "quality"}
    assert info["models"]["vessel_seg"]["type"] == "segmentation" and info["models"]["quality"]["type"] == "classification"
    assert {"random", "epistemic", "branch_uncertainty", "quality_lowest", "quality_uncertain"} <= set(info["strategies"])
    assert set(info["scoring"]) == {"epistemic", "quality"}
    assert set(info["trainers"]) == {"vessel_seg", "quality"}
    images = requests.get(f"{server['url']}/datastore/", params={"output": "all"}).json()["objects"]
    assert "synthetic" in images and not any("_aux_" in k for k in images)  # auxiliary images are no studies


def test_first_start_serves_the_classical_segmenter_that_finds_real_vessels(server, tmp_path):
    """No checkpoint: /info says the classical Frangi + Otsu segmenter is served, and its labels
    of the five XCAD test frames (sent as files: they are no studies of the server) reach the
    Dice of Frangi + Otsu as ``apps.classical`` measures it (0.444)."""
    info = requests.get(f"{server['url']}/info/").json()["models"]
    assert info["vessel_seg"]["serving"] == FIRST_START and FIRST_START in info["vessel_seg"]["description"]
    assert info["quality"]["serving"].startswith("untrained CASIQA (vit_tiny, 32 px)")
    xcad = shared_data("xcad_samples")
    dice = {}
    for frame in load_split("xcad_samples")["test"]:
        with open(xcad / "images" / f"{frame}.png", "rb") as f:
            r = requests.post(f"{server['url']}/infer/vessel_seg", params={"output": "image"}, files={"file": (f"{frame}.png", f)}, data={"params": json.dumps({"device": "cpu"})})
        assert r.status_code == 200, r.text
        (tmp_path / f"{frame}_label.png").write_bytes(r.content)
        label = read_angiogram(tmp_path / f"{frame}_label.png").frames[0] > 0
        dice[frame] = dice_score(label, read_angiogram(xcad / "masks" / f"{frame}.png").frames[0] > 0)
    print("first start, Dice on the XCAD test frames:", {k: round(v, 4) for k, v in dice.items()}, "mean", round(float(np.mean(list(dice.values()))), 4))
    assert np.mean(list(dice.values())) >= 0.444, dice


def test_infer_returns_a_label_in_the_studys_layout(server, tmp_path):
    r = requests.post(f"{server['url']}/infer/vessel_seg", params={"image": "frame1", "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 200, r.text
    (tmp_path / "frame1_label.png").write_bytes(r.content)
    label = read_angiogram(tmp_path / "frame1_label.png").frames
    assert label.shape == (1, ROWS, COLS) and set(np.unique(label)) <= {0.0, 1.0}
    r = requests.post(f"{server['url']}/infer/vessel_seg", params={"image": "run", "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 200, r.text
    (tmp_path / "run_label.nii.gz").write_bytes(r.content)  # a cine: a NIfTI with the DICOM's frames
    assert read_angiogram(tmp_path / "run_label.nii.gz", volume_as_frames=True).frames.shape == (4, ROWS, COLS)


def test_labels_are_stored_and_bad_input_is_refused_without_losing_them(server, tmp_path):
    url, studies = server["url"], server["studies"]
    write_mask_png(tmp_path / "frame1.png", server["truth"]["frame1"])
    r = _put_label(server, "frame1", tmp_path / "frame1.png")
    assert r.status_code == 200, r.text
    stored = studies / "labels" / "final" / "frame1.png"
    before = stored.read_bytes()
    assert np.array_equal(read_angiogram(stored).frames[0] > 0, server["truth"]["frame1"] > 0)

    write_mask_png(tmp_path / "wrong_shape.png", np.ones((COLS, ROWS), np.uint8))
    r = _put_label(server, "frame1", tmp_path / "wrong_shape.png")
    assert r.status_code == 422 and "(1, 64, 40)" in r.json()["detail"] and "(1, 40, 64)" in r.json()["detail"]
    (tmp_path / "corrupt.png").write_bytes(os.urandom(200))
    r = _put_label(server, "frame1", tmp_path / "corrupt.png")
    assert r.status_code == 422 and "not a readable image" in r.json()["detail"]
    assert stored.read_bytes() == before  # the earlier label is untouched

    r = _put_label(server, "no_such_image", tmp_path / "frame1.png")
    assert r.status_code == 404 and "no_such_image" in r.json()["detail"]
    r = requests.post(f"{url}/infer/vessel_seg", params={"image": "no_such_image"}, data={"params": "{}"})
    assert r.status_code == 404
    with open(tmp_path / "corrupt.png", "rb") as f:
        r = requests.put(f"{url}/datastore/image", params={"image": "upload"}, files={"file": ("upload.png", f)})
    assert r.status_code == 422 and "not a readable image" in r.json()["detail"]
    assert not (studies / "upload.png").exists()


def test_epistemic_scoring_in_the_background_drives_active_learning(server):
    url = server["url"]
    r = requests.post(f"{url}/scoring/epistemic", json={"device": "cpu"})
    assert r.status_code == 200, r.text
    assert _wait(server, "scoring")["status"] == "DONE"
    unlabelled = ["frame0", "frame2", "frame3", "run", "synthetic"]
    scores = {i: _info(server, i) for i in unlabelled}
    for i, info in scores.items():
        assert 0.0 <= info["epistemic_entropy"] <= np.log(2) + 1e-6 and "branch_entropy" in info, (i, info)
    r = requests.post(f"{url}/activelearning/epistemic", json={})
    assert r.status_code == 200 and r.json()["id"] == max(unlabelled, key=lambda i: scores[i]["epistemic_entropy"])
    r = requests.post(f"{url}/activelearning/branch_uncertainty", json={})
    assert r.status_code == 200 and r.json()["id"] in unlabelled


def test_train_fine_tunes_the_segmenter_on_submitted_labels(server):
    model = server["root"] / "model" / "vessel_seg" / "models" / "model.pt"
    before = model.stat().st_mtime
    r = requests.post(f"{server['url']}/train/vessel_seg", json={"max_epochs": 1, "device": "cpu", "multi_gpu": False, "val_split": 0.0})
    assert r.status_code == 200, r.text
    task = _wait(server, "train")
    assert task["status"] == "DONE", "\n".join(task.get("details", []))
    assert model.stat().st_mtime > before
    # the first training trains the configured ViT (not the classical start), served from then on
    served = requests.get(f"{server['url']}/info/").json()["models"]["vessel_seg"]["serving"]
    assert served == "ViTSegmenter (vit_tiny, 32 px) trained here on the annotators' labels", served
    r = requests.post(f"{server['url']}/infer/vessel_seg", params={"image": "frame2", "output": "json"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 200 and r.json()["network"] == "ViTSegmenter", r.text


def test_quality_scores_ratings_and_their_training(server, tmp_path):
    url, studies = server["url"], server["studies"]
    r = requests.post(f"{url}/infer/quality", params={"image": "synthetic", "output": "json"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 200, r.text
    result = r.json()
    assert set(result["scores"]) == {"guidewire", "branch", "artifact"} and all(1.0 <= s <= 5.0 for s in result["scores"].values())
    assert result["auxiliary"] == {"fluoro": str(studies / "synthetic_aux_fluoro.png"), "reference": str(studies / "synthetic_aux_reference.png")}
    assert all(abs(sum(p.values()) - 1.0) < 1e-3 for p in result["probabilities"].values())

    (tmp_path / "rating.json").write_text(json.dumps({"guidewire": 4, "branch": 2.5, "artifact": 3}))
    assert _put_label(server, "synthetic", tmp_path / "rating.json", tag="quality").status_code == 200
    stored = studies / "labels" / "quality" / "synthetic.json"
    assert json.loads(stored.read_text()) == {"guidewire": 4, "branch": 2.5, "artifact": 3}
    (tmp_path / "bad.json").write_text(json.dumps({"guidewire": 7, "branch": 2, "artifact": 3}))
    r = _put_label(server, "synthetic", tmp_path / "bad.json", tag="quality")
    assert r.status_code == 422 and "outside 1-5" in r.json()["detail"]
    assert json.loads(stored.read_text())["guidewire"] == 4
    info = requests.get(f"{url}/datastore/label/info", params={"label": "synthetic", "tag": "quality"}).json()
    assert info["rating"] == {"guidewire": 4.0, "branch": 2.5, "artifact": 3.0}

    requests.post(f"{url}/scoring/quality", json={"device": "cpu"})
    assert _wait(server, "scoring")["status"] == "DONE"
    unrated = ["frame0", "frame1", "frame2", "frame3", "run"]
    scores = {i: _info(server, i)["quality_score"] for i in unrated}
    assert "quality_score" not in _info(server, "synthetic")  # rated: not scored again
    r = requests.post(f"{url}/activelearning/quality_lowest", json={})
    assert r.json()["id"] == min(scores, key=scores.get)

    model = server["root"] / "model" / "quality" / "models" / "model.pt"
    before = model.stat().st_mtime
    requests.post(f"{url}/train/quality", json={"max_epochs": 1, "device": "cpu", "multi_gpu": False})
    task = _wait(server, "train")
    assert task["status"] == "DONE", "\n".join(task.get("details", []))
    assert model.stat().st_mtime > before


# ---- DICOMweb: the app against a real PACS (Orthanc with its DICOMweb plugin) on loopback -----

ORTHANC_PLUGINS = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so"]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    binary = shutil.which("Orthanc") or next((p for p in ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"] if os.path.exists(p)), None)
    plugin = next((p for p in ORTHANC_PLUGINS if os.path.exists(p)), None)
    if not binary or not plugin:
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (Debian: apt-get install orthanc orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {
        "Name": "angiokit-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"), "HttpPort": port,
        "DicomServerEnabled": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log_path = root / "orthanc.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{url}/system", proc, log_path, 60)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def _series_uid(path) -> str:
    import pydicom

    return str(pydicom.dcmread(str(path), stop_before_pixels=True).SeriesInstanceUID)


def test_dicomweb_pacs_inference_and_final_label_stored_as_dicom_seg(orthanc, tmp_path):
    from dicomweb_client import DICOMwebClient

    from angiokit.data.dicom_seg import read_dicom_seg

    real = SHARED_DATA / "dicom_xa" / "XA-MONO2-8-12x-catheter.dcm"
    cine, vessels = _frame(21, frames=3)
    synthetic = write_dicom_xa(tmp_path / "synthetic_cine.dcm", cine, 0.3, 66.7)
    corrected = {_series_uid(synthetic): write_nifti(tmp_path / "corrected.nii.gz", vessels)}  # an annotator's label
    uploads = [synthetic] + ([real] if real.exists() else [])  # the real file is in ../shared/data
    for path in uploads:
        r = requests.post(f"{orthanc}/instances", data=open(path, "rb").read())
        assert r.status_code == 200 and r.json()["Status"] == "Success", r.text
    dicomweb = f"{orthanc}/dicom-web"
    conf = {"models": "vessel_seg", "model_dir": str(tmp_path / "model"), "vessel_seg_config": json.dumps(SEG)}
    with running_server(tmp_path, dicomweb, conf, env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "cache")}) as (url, log):
        r = requests.post(f"{url}/infer/vessel_seg", params={"image": "1.2.3.4.5.not.in.the.pacs"}, data={"params": "{}"})
        assert r.status_code == 404 and "not among" in r.json()["detail"]
        for path in uploads:
            series = _series_uid(path)
            r = requests.post(f"{url}/infer/vessel_seg", params={"image": series, "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
            assert r.status_code == 200, r.text + log.read_text()[-3000:]
            label_path = tmp_path / f"{series}.nii.gz"
            label_path.write_bytes(r.content)
            label = read_angiogram(label_path, volume_as_frames=True).frames
            assert label.shape == read_angiogram(path, frames="all").frames.shape  # frame by frame, the cine's layout
            assert set(np.unique(label)) <= {0.0, 1.0}

            # the annotator saves it (or their correction): a DICOM SEG in the PACS, frame by frame equal
            label_path = corrected.get(series, label_path)
            label = read_angiogram(label_path, volume_as_frames=True).frames
            r = _put_label({"url": url}, series, label_path)
            assert r.status_code == 200, r.text + log.read_text()[-3000:]
            client = DICOMwebClient(dicomweb)
            segs = [s for s in client.search_for_series(search_filters={"Modality": "SEG"}) if _referenced_series(client, s) == series]
            assert len(segs) == 1, f"expected one SEG referencing {series}"
            instance = client.retrieve_series(segs[0]["0020000D"]["Value"][0], segs[0]["0020000E"]["Value"][0])[0]
            instance.save_as(str(tmp_path / "seg.dcm"))
            np.testing.assert_array_equal(read_dicom_seg(str(tmp_path / "seg.dcm")), label > 0)

        # OHIF as served by the app (/ohif/) reads the PACS through the app's DICOMweb proxy
        assert requests.get(f"{url}/ohif/").status_code == 200
        r = requests.get(f"{url}/proxy/dicom/qido/series")
        assert r.status_code == 200
        listed = sorted(s["00080060"]["Value"][0] for s in r.json())  # the XA runs and their SEGs
        assert listed == ["SEG"] * len(uploads) + ["XA"] * len(uploads)


def _referenced_series(client, seg_series: dict) -> str:
    import pydicom

    meta = pydicom.Dataset.from_json(client.retrieve_series_metadata(seg_series["0020000D"]["Value"][0], seg_series["0020000E"]["Value"][0])[0])
    return str(meta.ReferencedSeriesSequence[0].SeriesInstanceUID)


# ---- starting weights, and the documentation's figure command --------------------------------


def _tiny_segmenter_checkpoint(path, seed: int) -> str:
    """A ViT segmenter checkpoint as the bundle writes it (weights + what built them)."""
    import torch

    from angiokit.networks import ViTSegmenter, save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(ViTSegmenter(preset="vit_tiny", img_size=32, out_channels=2), str(path), "0.2.0", image_size=32, num_classes=2)


def _start(model_dir, conf: dict):
    """What a server start does for ``vessel_seg`` (working copy, weights, fit check)."""
    from monailabel_app.lib.configs import VesselSeg

    task = VesselSeg()
    task.init("vessel_seg", str(model_dir), conf, None)
    return task


def test_a_newly_given_checkpoint_replaces_the_weights_and_the_same_one_keeps_them(tmp_path):
    from monailabel_app.lib.weights import describe_weights

    model_dir = tmp_path / "model"
    weights = model_dir / "vessel_seg" / "models" / "model.pt"
    first = _start(model_dir, {"vessel_seg_config": json.dumps(SEG)})
    assert describe_weights(first.bundle_path) == FIRST_START

    _tiny_segmenter_checkpoint(weights, seed=1)  # as the first training writes it
    trained_here = weights.read_bytes()
    a, b = _tiny_segmenter_checkpoint(tmp_path / "a.pt", seed=2), _tiny_segmenter_checkpoint(tmp_path / "b.pt", seed=3)
    task = _start(model_dir, {"vessel_seg_checkpoint": a})  # a new checkpoint, no size flags: replaces
    assert weights.read_bytes() == open(a, "rb").read()
    assert describe_weights(task.bundle_path) == f"trained ViTSegmenter (vit_tiny, 32 px) from {a}"
    assert [p.read_bytes() for p in (weights.parent / "replaced").glob("*.pt")] == [trained_here]  # nothing trained is lost

    _tiny_segmenter_checkpoint(weights, seed=4)  # the annotators' fine-tuning
    fine_tuned = weights.read_bytes()
    _start(model_dir, {"vessel_seg_checkpoint": a})  # the same checkpoint again: kept
    assert weights.read_bytes() == fine_tuned
    assert describe_weights(task.bundle_path) == f"ViTSegmenter (vit_tiny, 32 px) trained here on the annotators' labels, starting from {a}"

    _start(model_dir, {"vessel_seg_checkpoint": b})  # another one: replaces, the fine-tuned weights set aside
    assert weights.read_bytes() == open(b, "rb").read()
    assert fine_tuned in [p.read_bytes() for p in (weights.parent / "replaced").glob("*.pt")]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        _start(model_dir, {"vessel_seg_checkpoint": str(tmp_path / "missing.pt")})


def test_a_checkpoint_without_its_network_needs_the_sizes_it_was_trained_with(tmp_path):
    """Checkpoints written before angiokit 0.2 (a bare state dict) load with --conf vessel_seg_config."""
    import torch

    from monailabel_app.lib.weights import describe_weights

    state = torch.load(_tiny_segmenter_checkpoint(tmp_path / "new.pt", seed=0), weights_only=True)["model"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="does not record its network.*--conf vessel_seg_config"):
        _start(tmp_path / "a", {"vessel_seg_checkpoint": str(tmp_path / "old.pt"), "vessel_seg_config": json.dumps({**SEG, "preset": "vit_cpu"})})
    task = _start(tmp_path / "b", {"vessel_seg_checkpoint": str(tmp_path / "old.pt"), "vessel_seg_config": json.dumps(SEG)})
    assert describe_weights(task.bundle_path) == f"trained network of the configured sizes (its checkpoint does not record them) from {tmp_path / 'old.pt'}"


def _demo_checkpoints(quick_demo) -> dict:
    """The models ``apps.demo`` trained: {model: its model.pt}."""
    return {"vessel_seg": quick_demo["out"] / "segmentation" / "models" / "model.pt", "quality": quick_demo["out"] / "quality" / "cas_iqa" / "models" / "model.pt"}


def test_models_trained_by_the_demo_are_served_with_no_size_flags(quick_demo, tmp_path):
    from angiokit.networks import read_network_spec

    from monailabel_app.lib.weights import network_name

    checkpoints = _demo_checkpoints(quick_demo)
    studies = tmp_path / "studies"
    image, _ = _frame(31)
    write_png(studies / "synthetic.png", image[0])
    write_png(studies / "synthetic_aux_fluoro.png", _frame(32)[0][0])
    write_dicom_xa(studies / "run.dcm", _frame(33, frames=3)[0], 0.3, 66.7)
    conf = {"models": "all", "model_dir": str(tmp_path / "model"), "vessel_seg_checkpoint": str(checkpoints["vessel_seg"]), "quality_checkpoint": str(checkpoints["quality"])}
    with running_server(tmp_path, studies, conf) as (url, log):
        info = requests.get(f"{url}/info/").json()["models"]
        for model, path in checkpoints.items():
            assert info[model]["serving"] == f"trained {network_name(read_network_spec(str(path)))} from {path}", info[model]
        assert info["vessel_seg"]["serving"].startswith("trained ViTSegmenter (")
        for study, frames in (("synthetic", 1), ("run", 3)):
            r = requests.post(f"{url}/infer/vessel_seg", params={"image": study, "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
            assert r.status_code == 200, r.text + log.read_text()[-3000:]
            suffix = ".png" if frames == 1 else ".nii.gz"
            (tmp_path / f"{study}_label{suffix}").write_bytes(r.content)
            assert read_angiogram(tmp_path / f"{study}_label{suffix}", volume_as_frames=True).frames.shape == (frames, ROWS, COLS)
        r = requests.post(f"{url}/infer/quality", params={"image": "synthetic", "output": "json"}, data={"params": json.dumps({"device": "cpu"})})
        scorer = read_network_spec(str(checkpoints["quality"]))["config"]["_target_"].rsplit(".", 1)[-1]
        assert r.status_code == 200 and r.json()["network"] == scorer and all(1.0 <= v <= 5.0 for v in r.json()["scores"].values()), r.text
    assert "_config" not in " ".join(conf)


def test_annotation_figure_command_draws_labels_served_by_the_api(quick_demo, tmp_path):
    """docs/annotation.md's figure command with the demo's segmenter (no size flags)."""
    from apps.annotation_figure import main

    out = tmp_path / "overlay.png"
    main(out=str(out), checkpoint=str(_demo_checkpoints(quick_demo)["vessel_seg"]), workdir=str(tmp_path / "work"), synthetic_size=64)
    figure = read_angiogram(out).frames
    assert figure.shape[1] > 300 and figure.shape[2] > 300
    labels = sorted(p.name for p in (tmp_path / "work").glob("*_label.*"))
    assert "synthetic_label.png" in labels
    if SHARED_DATA.joinpath("dicom_xa").exists():
        assert "real_cine_label.nii.gz" in labels and read_angiogram(tmp_path / "work" / "real_cine_label.nii.gz", volume_as_frames=True).frames.shape[0] == 12


def test_ids_and_tags_never_reach_outside_the_studies_folder(server, tmp_path):
    """Path-traversal vectors on the write endpoints (issue 25, point 1): each is a 400 naming
    what is allowed, and nothing is written beside or above the studies folder."""
    url, studies, root = server["url"], server["studies"], server["root"]
    write_mask_png(tmp_path / "frame2.png", server["truth"]["frame2"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (studies / "labels").mkdir(exist_ok=True)
    os.symlink(outside, studies / "labels" / "linked", target_is_directory=True)
    for tag in ("../../../escape_tag", str(tmp_path / "abs_tag"), "..", "a\x00b", "x" * 300, "linked"):
        r = _put_label(server, "frame2", tmp_path / "frame2.png", tag=tag)
        assert r.status_code == 400, (tag, r.status_code, r.text)
        assert "refused" in r.json()["detail"]
    for image_id in ("../escape_img", str(tmp_path / "abs_img"), "..", "a/b"):
        with open(tmp_path / "frame2.png", "rb") as f:
            r = requests.put(f"{url}/datastore/image", params={"image": image_id}, files={"file": ("upload.png", f)})
        assert r.status_code == 400, (image_id, r.status_code, r.text)
    assert not list(outside.iterdir()) and not (root / "escape_tag").exists() and not (root / "escape_img.png").exists()
    assert not (tmp_path / "abs_tag").exists() and not (tmp_path / "abs_img.png").exists()
    assert requests.get(f"{url}/info/").status_code == 200  # the server is unharmed


@pytest.mark.parametrize("datastore", ["folder", "dicomweb"])
def test_a_crash_in_the_middle_of_a_label_copy_keeps_the_previous_label(tmp_path, monkeypatch, datastore):
    """Labels are copied to a temporary file, flushed, then renamed (issue 25, point 4), in the
    studies folder and in the DICOMweb datastore's cache, where a final label is kept beside the
    DICOM SEG stored in the PACS (its local copy is written by the same ``_store_label``)."""
    from monailabel.datastore.local import LocalDatastore

    from monailabel_app.lib import datastore as store
    from monailabel_app.lib.dicomweb import AngioDICOMwebDatastore

    image, vessel = _frame(3)
    write_png(tmp_path / "studies" / "frame.png", image[0])
    if datastore == "folder":
        ds = store.AngioDatastore(str(tmp_path / "studies"), auto_reload=False)
        save = lambda label: ds.save_label("frame", label, "final", {})  # noqa: E731
    else:  # the cache part of the DICOMweb datastore, without a PACS
        ds = AngioDICOMwebDatastore.__new__(AngioDICOMwebDatastore)
        LocalDatastore.__init__(ds, str(tmp_path / "studies"), extensions=store.EXTENSIONS, auto_reload=False)
        save = lambda label: ds._store_label("frame", label, "final", {"SeriesInstanceUID": "1.2.3"})  # noqa: E731
    write_mask_png(tmp_path / "first.png", vessel[0])
    save(str(tmp_path / "first.png"))
    stored = tmp_path / "studies" / "labels" / "final" / "frame.png"
    before = stored.read_bytes()

    def crash_halfway(src, dst, *args, **kwargs):
        dst.write(src.read(10))
        raise OSError("disk pulled out mid-copy")

    monkeypatch.setattr(store.shutil, "copyfileobj", crash_halfway)
    write_mask_png(tmp_path / "second.png", 1 - vessel[0])
    with pytest.raises(OSError, match="mid-copy"):
        save(str(tmp_path / "second.png"))
    assert stored.read_bytes() == before and np.array_equal(read_angiogram(stored).frames[0] > 0, vessel[0] > 0)
    assert sorted(p.name for p in stored.parent.iterdir()) == ["frame.png"]  # no temporary file left
    record = json.loads((tmp_path / "studies" / "datastore_v2.json").read_text())
    assert record["objects"]["frame"]["labels"]["final"]["info"]["name"] == "frame.png"  # the record still points at it
