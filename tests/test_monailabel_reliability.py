"""The annotation server under attack, faults and load (issue 25), served for real on loopback:
reads outside the studies, corrupt studies, a long inference beside other requests, the model
it serves and where it came from, and what a server leaves in the checkout. Every loop is
bounded (deadlines, fixed counts)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from angiokit.data import read_angiogram, to_uint, write_dicom_xa, write_mask_png
from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.metrics import dice_score

from apps.bench.server import concurrent, infer, info_latencies, lost_labels, make_studies, percentiles, upload_labels, while_inferring

from .conftest import REPO, running_server
from .test_monailabel_app import _start

requests = pytest.importorskip("requests")

CPU = json.dumps({"device": "cpu"})
CINE_FRAMES, SIZE = 24, 256  # a few seconds of the classical segmenter on 2 cores


def _checkout_app_folder() -> list:
    return sorted(os.listdir(REPO / "monailabel_app"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """First start (the classical segmenter) on 16 synthetic frames, a cine, and two studies no
    reader can read: a truncated DICOM and a text file named .png."""
    checkout_before = _checkout_app_folder()
    root = tmp_path_factory.mktemp("reliability")
    studies = root / "studies"
    studies.mkdir()
    truth = make_studies(studies, frames=16, size=64, cine_frames=CINE_FRAMES)
    whole = (studies / "cine.dcm").read_bytes()
    (studies / "truncated.dcm").write_bytes(whole[: len(whole) // 2])
    (studies / "notes.png").write_text("not an image: a text file in the studies folder")
    write_dicom_xa(studies / "long.dcm", to_uint(synthesize(SynthConfig(size=SIZE, frames=CINE_FRAMES), seed=5).image, 8), 0.3, 66.7)
    conf = {"models": "vessel_seg", "model_dir": str(root / "model")}
    with running_server(root / "server", studies, conf) as (url, log):
        yield {"url": url, "root": root, "studies": studies, "truth": truth, "log": log, "checkout_before": checkout_before}


def test_infer_reads_only_studies_of_the_datastore(server, tmp_path):
    """Point 1, reads: ``image=`` is a study id; a path (absolute, relative, to a readable image
    or to /etc/passwd, with or without an unknown session) is a 404, never read. An uploaded
    file is still segmented."""
    url = server["url"]
    outside = tmp_path / "outside.png"
    shutil.copy(server["studies"] / "frame0.png", outside)
    for image in (str(outside), "/etc/passwd", "../studies/frame0", os.path.relpath(outside), str(server["studies"] / "frame0.png")):
        for session in ("", "no-such-session"):
            r = requests.post(f"{url}/infer/vessel_seg", params={"image": image, "session_id": session, "output": "json"}, data={"params": CPU})
            assert r.status_code == 404, (image, session, r.status_code, r.text[:300])
            assert "not in the datastore" in r.json()["detail"]
    with open(outside, "rb") as f:
        r = requests.post(f"{url}/infer/vessel_seg", params={"output": "json"}, files={"file": ("outside.png", f)}, data={"params": CPU})
    assert r.status_code == 200 and r.json()["frames"] == 1, r.text[:300]
    r = infer(url, "frame0")
    assert r.status_code == 200, r.text[:300]


def test_unreadable_studies_are_marked_and_answer_422_naming_the_file(server, tmp_path):
    """Point 6: a truncated DICOM and a text file in the studies folder are listed with the
    reason they cannot be read, are not offered for annotation, and infer answers 422."""
    url = server["url"]
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}).json()["objects"]
    for study, reason in (("truncated", "pixel data"), ("notes", "not a readable image")):
        info = objects[study]["image"]["info"]
        assert info["readable"] is False and reason in info["unreadable"], info
        r = infer(url, study)
        assert r.status_code == 422, (study, r.status_code, r.text[:300])
        assert study in r.json()["detail"] and reason in r.json()["detail"]
    assert objects["frame0"]["image"]["info"]["readable"] is True
    offered = {requests.post(f"{url}/activelearning/random", json={}).json()["id"] for _ in range(12)}
    assert offered and not offered & {"truncated", "notes"}, offered
    (tmp_path / "bad.png").write_bytes(os.urandom(300))
    with open(tmp_path / "bad.png", "rb") as f:
        r = requests.post(f"{url}/infer/vessel_seg", params={"output": "json"}, files={"file": ("bad.png", f)}, data={"params": CPU})
    assert r.status_code == 422 and "uploaded image cannot be read" in r.json()["detail"], r.text[:300]


def test_info_and_label_uploads_stay_responsive_during_a_long_inference(server, tmp_path):
    """Point 5: while a cine is segmented, /info answers (every probe before the inference ends)
    and 15 concurrent label uploads all land; 20 concurrent inferences all answer."""
    url, studies = server["url"], server["studies"]
    infer(url, "frame0")  # the model is built at the first request
    idle = info_latencies(url, 10)
    mix = while_inferring(url, "long", lambda: info_latencies(url, 1)[0])
    print(f"cine of {CINE_FRAMES} frames: {mix['seconds']:.2f} s; /info idle p95 {percentiles(idle)[1]:.3f} s, during it p50 / p95 {percentiles(mix['probe_seconds'])[0]:.3f} / {percentiles(mix['probe_seconds'])[1]:.3f} s ({len(mix['probe_seconds'])} probes)")
    assert mix["status"] == 200
    assert len(mix["probe_seconds"]) >= 3 and mix["probes_before_infer_done"] == len(mix["probe_seconds"]), mix
    assert percentiles(mix["probe_seconds"])[1] < 1.0

    sent = {f"frame{i}": server["truth"][f"frame{i}"] for i in range(1, 16)}
    for image, mask in sent.items():
        write_mask_png(tmp_path / f"{image}.png", mask)
    uploads = while_inferring(url, "long", upload_labels(url, {i: tmp_path / f"{i}.png" for i in sent}))
    statuses = [s for batch in uploads["probe_results"] for s in batch]
    assert statuses and set(statuses) == {200} and uploads["probes_before_infer_done"] >= 1, uploads
    assert lost_labels(studies, sent) == []

    latencies = concurrent([lambda i=i: infer(url, f"frame{i % 16}") for i in range(20)])
    p50, p95 = percentiles([t for t, _ in latencies])
    print(f"20 concurrent inferences: p50 {p50:.2f} s, p95 {p95:.2f} s")
    assert [r.status_code for _, r in latencies] == [200] * 20


def test_servers_leave_the_checkout_as_they_found_it(server):
    """MONAI Label creates model/, logs/ and bin/ in the app folder it serves: a test server
    serves a temporary one, and its models and logs stay in its own folder."""
    assert _checkout_app_folder() == server["checkout_before"]
    assert (server["root"] / "server" / "app" / "logs" / "app.log").is_file()
    assert (server["root"] / "model" / "vessel_seg" / "models" / "model.pt").is_file()


def _sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_checkpoint_given_after_a_start_without_one_is_served_and_says_so(quick_demo, tmp_path):
    """Point 2: a server started through the ``monailabel`` script with the documented JSON-file
    form of ``--conf vessel_seg_config``, on a model folder whose first start had no checkpoint,
    serves the checkpoint it is given: /info and every infer response carry its provenance, and
    its label of a synthetic study has the Dice of the bundle's own inference."""
    from .bundle_utils import workflow

    checkpoint = quick_demo["out"] / "segmentation" / "models" / "model.pt"
    studies = tmp_path / "studies"
    studies.mkdir()
    truth = make_studies(studies, frames=1, size=128, cine_frames=0, seed=40)["frame0"]
    model_dir = tmp_path / "model"
    config_file = REPO / "monailabel_app" / "conf" / "vessel_seg_cpu.json"
    first = _start(model_dir, {"vessel_seg_config": str(config_file)})  # no checkpoint: the classical start
    assert json.loads((model_dir / "vessel_seg" / "models" / "model_source.json").read_text())["source"] == "classical"

    conf = {"models": "vessel_seg", "model_dir": str(model_dir), "vessel_seg_checkpoint": str(checkpoint), "vessel_seg_config": str(config_file)}
    with running_server(tmp_path / "server", studies, conf, via_script=True) as (url, log):
        served = requests.get(f"{url}/info/").json()["models"]["vessel_seg"]["provenance"]
        r = requests.post(f"{url}/infer/vessel_seg", params={"image": "frame0", "output": "all"}, data={"params": CPU})
        assert r.status_code == 200, r.text[:300]
        from requests_toolbelt.multipart.decoder import MultipartDecoder

        parts = {p.headers[b"Content-Disposition"].split(b'name="')[1].split(b'"')[0].decode(): p.content for p in MultipartDecoder.from_response(r).parts}
        result = json.loads(parts["params"])
        (tmp_path / "app_label.png").write_bytes(parts["image"])
    weights = model_dir / "vessel_seg" / "models" / "model.pt"
    expected = {"source": "checkpoint", "trained": True, "checkpoint": str(checkpoint), "checkpoint_sha256": _sha256(checkpoint), "sha256": _sha256(weights), "weights": str(weights)}
    assert {k: served[k] for k in expected} == expected and served["bundle_version"] and served["angiokit_version"], served
    assert result["model"] == served and result["network"] == "ViTSegmenter"
    assert _sha256(weights) == _sha256(checkpoint)

    # the bundle's own inference of the same frame with the same checkpoint
    inputs, out = tmp_path / "bundle_in", tmp_path / "bundle_out"
    inputs.mkdir()
    shutil.copy(studies / "frame0.png", inputs / "frame0.png")
    run = workflow("xa_vessel_seg", ["inference"], "infer", bundle_root=str(tmp_path / "bundle"), checkpoint=str(checkpoint), output_dir=str(out), dataset_dir=str(inputs), output_formats=["png"], device="$torch.device('cpu')")
    run.initialize()
    run.run()
    run.finalize()
    bundle_label = read_angiogram(out / "frame0_seg.png").frames[0] > 0
    app_label = read_angiogram(tmp_path / "app_label.png").frames[0] > 0
    dice_app, dice_bundle = dice_score(app_label, truth > 0), dice_score(bundle_label, truth > 0)
    print(f"Dice of the served checkpoint {dice_app:.4f}, of the bundle's inference {dice_bundle:.4f} (the first start's classical segmenter served before)")
    assert abs(dice_app - dice_bundle) < 0.01 and (app_label == bundle_label).mean() > 0.99, (dice_app, dice_bundle)
    assert first.bundle_path == str(model_dir / "vessel_seg")
