"""The XA annotation page (``web/xa_annotator``, served by the app at ``/xa/``) in a real browser
(issue 32): headless Chromium (the system's, driven by Playwright's Python package) against the
MONAI Label app on an Orthanc DICOMweb PACS holding a real XA cine from ../shared/data.

Study list -> open the cine -> Run vessel_seg -> the overlay on every frame equals the label the
server answered -> a brush stroke and an eraser stroke on one frame -> Save -> the DICOM SEG read
back from Orthanc through WADO-RS holds the corrected frame (and the server's label elsewhere);
then the quality model's three scores, corrected in the form and saved as the study's rating;
Train (one epoch on the SEG) and Next sample (a run of a multi-run series, a cine of its own).
No console error, no failed request to the loopback servers. Screenshots go to a temporary
folder and, where ANGIOKIT_SCREENSHOTS=DIR is set, to DIR too (docs/annotation_browser_*.png).

Skips with the reason where Chromium (/usr/bin/chromium), Playwright, Orthanc, the built page
(web/xa_annotator/build.sh) or ../shared/data is absent."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from .conftest import REPO, running_server, shared_data
from .test_monailabel_app import IQA, SEG, orthanc  # noqa: F401  (orthanc: the PACS fixture, Orthanc on a free loopback port)

requests = pytest.importorskip("requests")

CHROMIUM = "/usr/bin/chromium"
DIST = REPO / "web" / "xa_annotator" / "dist"
CINE = "XA-MONO2-8-12x-catheter.dcm"  # 12 frames of 512 x 512, JPEG Lossless, as published
RUNS = ("phantom_vukicevic_IM7.dcm", "phantom_vukicevic_IM8.dcm")  # two runs of one series (9 and 8 frames): two more studies
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
FRAME = 5  # the frame corrected
STROKE = [(132, 165), (143, 205), (170, 240), (197, 262), (232, 280), (275, 298), (312, 322), (348, 352), (378, 378)]  # (row, column): the catheter and wire on that frame


@pytest.fixture(scope="module")
def playwright_api():
    """Playwright's sync API, or a skip that says what is missing (before any server starts)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    if not (DIST / "index.html").is_file():
        pytest.skip(f"the XA page is not built ({DIST} absent): run web/xa_annotator/build.sh")
    for name in (CINE,) + RUNS:
        shared_data("dicom_xa", name)
    return pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed (pip install -r requirements.txt)")


@pytest.fixture(scope="module")
def annotation_server(playwright_api, orthanc, tmp_path_factory):  # noqa: F811
    """The real cine in Orthanc and the app served on it (vessel_seg and quality, tiny sizes)."""
    import pydicom

    path, runs = shared_data("dicom_xa", CINE), [shared_data("dicom_xa", name) for name in RUNS]
    header = pydicom.dcmread(str(path), stop_before_pixels=True)
    for upload in [path] + runs:
        r = requests.post(f"{orthanc}/instances", data=upload.read_bytes())
        assert r.status_code == 200 and r.json()["Status"] == "Success", r.text
    root = tmp_path_factory.mktemp("browser")
    conf = {"models": "vessel_seg,quality", "model_dir": str(root / "model"), "vessel_seg_config": json.dumps(SEG), "quality_config": json.dumps(IQA)}
    with running_server(root, f"{orthanc}/dicom-web", conf, env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(root / "cache")}) as (url, log):
        yield {
            "url": url, "log": log, "orthanc": orthanc, "study": str(header.SeriesInstanceUID), "frames": int(header.NumberOfFrames),
            "runs": {str(h.SOPInstanceUID): int(h.NumberOfFrames) for h in (pydicom.dcmread(str(r), stop_before_pixels=True) for r in runs)},
        }


@pytest.fixture
def shots(tmp_path):
    """save(page, name): a screenshot into tmp_path, and into $ANGIOKIT_SCREENSHOTS if set."""
    extra = os.environ.get("ANGIOKIT_SCREENSHOTS")

    def save(page, name: str) -> Path:
        out = tmp_path / f"annotation_browser_{name}.png"
        page.screenshot(path=str(out))
        if extra:
            os.makedirs(extra, exist_ok=True)
            shutil.copy(out, os.path.join(extra, out.name))
        return out

    return save


class Watch:
    """Console errors, uncaught exceptions and failed requests (to loopback hosts) of a page."""

    def __init__(self, page):
        self.errors, self.failed, self.requests = [], [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._failed(r.url, r.failure))
        page.on("response", lambda r: self._failed(r.url, f"HTTP {r.status}") if r.status >= 400 else None)

    def _failed(self, url, why):
        if urlparse(url).hostname in LOOPBACK:
            self.failed.append(f"{url}: {why}")

    def check(self):
        assert not self.errors, self.errors
        assert not self.failed, self.failed


def _label_frames(data: bytes, tmp_path: Path, name: str) -> np.ndarray:
    from angiokit.data import read_angiogram

    path = tmp_path / name
    path.write_bytes(data)
    return read_angiogram(str(path), volume_as_frames=True).frames


def _overlay(page, k: int, shape) -> np.ndarray:
    return np.asarray(page.evaluate("k => window.xa.labelFrame(k)", k), dtype=np.uint8).reshape(shape)


def _drag(page, points):
    """A mouse stroke through canvas points of the viewport (fractions of its size)."""
    box = page.locator("#viewport").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for a, b in zip(xy, xy[1:]):
        for t in np.linspace(0, 1, 12)[1:]:
            page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
    page.mouse.up()


def _wait(page, attribute: str, value: str, timeout: float = 240_000):
    page.wait_for_function("([a, v]) => document.body.dataset[a] === v || document.getElementById('status').dataset.state === 'error'", arg=[attribute, value], timeout=timeout)
    status = page.locator("#status")
    assert status.get_attribute("data-state") != "error", status.inner_text()


def _seg_from_orthanc(orthanc_url: str, series: str, tmp_path: Path) -> np.ndarray:
    """The one DICOM SEG of the PACS that references ``series``, retrieved through WADO-RS."""
    from dicomweb_client import DICOMwebClient

    from angiokit.data.dicom_seg import read_dicom_seg

    client = DICOMwebClient(f"{orthanc_url}/dicom-web")
    found = []
    for seg in client.search_for_series(search_filters={"Modality": "SEG"}):
        study_uid, seg_uid = seg["0020000D"]["Value"][0], seg["0020000E"]["Value"][0]
        for instance in client.retrieve_series(study_uid, seg_uid):
            if str(instance.ReferencedSeriesSequence[0].SeriesInstanceUID) == series:
                found.append(instance)
    assert len(found) == 1, f"{len(found)} SEG instances reference series {series}"
    path = tmp_path / "seg.dcm"
    found[0].save_as(str(path))
    return np.asarray(read_dicom_seg(str(path)))


def test_annotating_an_xa_cine_in_the_browser(playwright_api, annotation_server, shots, tmp_path):
    sync_api = playwright_api
    url, study, frames = annotation_server["url"], annotation_server["study"], annotation_server["frames"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1320, "height": 720})
            watch = Watch(page)

            # the study list, from the app that serves the page
            page.goto(f"{url}/xa/")
            _wait(page, "ready", "1", 60_000)
            assert page.locator(f'#studies tr[data-study="{study}"]').count() == 1
            assert page.locator("#studies tbody tr").count() == 1 + len(annotation_server["runs"])
            for sop in annotation_server["runs"]:  # each run of the multi-run series: a cine of its own
                assert page.locator(f'#studies tr[data-study="{sop}"]').inner_text().startswith("run ")
            shots(page, "list")

            # the cine: every frame loaded into the stack viewport
            page.click(f'#studies tr[data-study="{study}"]')
            _wait(page, "open", study, 120_000)
            assert page.evaluate("window.xa.state.imageIds.length") == frames
            assert f"frame 1 / {frames}" in page.inner_text("#frame-label")
            assert sum("/xa/api/dicom" in u for u in watch.requests) == 1  # the file once, not once per frame

            # cine playback, and stop
            page.click("#play")
            page.wait_for_function("Number(document.body.dataset.frame) >= 3", timeout=30_000)
            page.click("#play")
            assert page.inner_text("#play") == "Play"

            # Run vessel_seg: the overlay on every frame is the label the server answered
            with page.expect_response(lambda r: "/infer/vessel_seg" in r.url, timeout=300_000) as answer:
                page.click("#run-seg")
            assert answer.value.status == 200
            label = _label_frames(answer.value.body(), tmp_path, "server_label.nii.gz")
            _wait(page, "segmented", study, 60_000)
            assert label.shape[0] == frames and label.sum() > 0
            rows, columns = label.shape[1:]
            for k in range(frames):
                np.testing.assert_array_equal(_overlay(page, k, (rows, columns)), (label[k] > 0).astype(np.uint8), err_msg=f"frame {k}")
            page.evaluate(f"window.xa.setFrame({FRAME})")
            page.wait_for_function(f"document.body.dataset.frame === '{FRAME}'")
            shots(page, "overlay")

            # a brush stroke along the catheter and guide wire, and an eraser cut through the label
            # at the right rim of the field, on one frame; the other frames untouched
            before = _overlay(page, FRAME, (rows, columns))
            page.check('input[name=tool][value="brush"]')
            page.fill("#brush-size", "4")
            _drag(page, [(c / columns, r / rows) for r, c in STROKE])
            painted = _overlay(page, FRAME, (rows, columns))
            added = (painted > 0) & (before == 0)
            assert added.sum() > 200 and not ((before > 0) & (painted == 0)).any(), added.sum()
            near = np.zeros_like(added)
            (r0, c0), (r1, c1) = np.min(STROKE, 0) - 16, np.max(STROKE, 0) + 16
            near[r0:r1, c0:c1] = True
            assert added[near].sum() == added.sum()  # where the stroke went
            rim = painted[rows // 3 : 2 * rows // 3, 3 * columns // 4 :] > 0
            erase_row = int(np.argmax(rim.sum(1))) + rows // 3  # a row where the label crosses the right rim
            assert rim.sum(1).max() > 0
            page.check('input[name=tool][value="eraser"]')
            _drag(page, [(0.78, (erase_row + 0.5) / rows), (0.98, (erase_row + 0.5) / rows)])
            corrected = _overlay(page, FRAME, (rows, columns))
            erased = (painted > 0) & (corrected == 0)
            assert erased.sum() > 0 and not ((corrected > 0) & (painted == 0)).any()
            assert erased[erase_row].any() and erased[:, : 3 * columns // 4 - 16].sum() == 0
            for k in (0, FRAME - 1, FRAME + 1, frames - 1):
                np.testing.assert_array_equal(_overlay(page, k, (rows, columns)), (label[k] > 0).astype(np.uint8), err_msg=f"frame {k} changed")
            shots(page, "corrected")

            # Save: a DICOM SEG in the PACS, read back through WADO-RS, holds the correction
            with page.expect_response(lambda r: "/datastore/label" in r.url and r.request.method == "PUT", timeout=120_000) as saved:
                page.click("#save")
            assert saved.value.status == 200, saved.value.text()
            _wait(page, "saved", study, 60_000)
            seg = _seg_from_orthanc(annotation_server["orthanc"], study, tmp_path)
            assert seg.shape == label.shape, seg.shape
            np.testing.assert_array_equal(seg[FRAME] > 0, corrected > 0)
            assert (seg[FRAME] > 0)[added].all() and not (seg[FRAME] > 0)[erased].any()
            for k in set(range(frames)) - {FRAME}:
                np.testing.assert_array_equal(seg[k] > 0, label[k] > 0, err_msg=f"frame {k}")
            assert "saved" in page.locator(f'#studies tr[data-study="{study}"]').inner_text()

            # the quality model: its three scores beside the image, corrected, saved as the rating
            with page.expect_response(lambda r: "/infer/quality" in r.url, timeout=300_000) as scored:
                page.click("#run-quality")
            assert scored.value.status == 200, scored.value.text()
            scores = scored.value.json()["scores"]
            _wait(page, "scored", study, 60_000)
            for metric in ("guidewire", "branch", "artifact"):
                assert page.inner_text(f"#score-{metric}") == f"{scores[metric]:.2f}"
            page.click("#confirm-scores")
            taken = {m: float(page.input_value(f'#rating input[name="{m}"]')) for m in ("guidewire", "branch", "artifact")}
            assert all(abs(taken[m] - scores[m]) <= 0.25 + 1e-6 for m in taken), (taken, scores)
            page.fill('#rating input[name="branch"]', "2")
            page.fill('#rating input[name="comment"]', "distal LAD faint")
            shots(page, "rating")
            page.click("#save-rating")
            _wait(page, "rated", study, 60_000)
            stored = requests.get(f"{url}/xa/api/study", params={"image": study}).json()
            assert stored["label"] is True
            assert stored["rating"] == {"guidewire": taken["guidewire"], "branch": 2.0, "artifact": taken["artifact"]}, stored
            objects = requests.get(f"{url}/datastore/", params={"output": "all"}).json()["objects"]
            assert set(objects[study]["labels"]) >= {"final", "quality"}
            assert "rated" in page.locator(f'#studies tr[data-study="{study}"]').inner_text()

            # reopened, the saved label is shown again (from the app, not the page's memory)
            page.reload()
            _wait(page, "ready", "1", 60_000)
            page.click(f'#studies tr[data-study="{study}"]')
            _wait(page, "open", study, 120_000)
            np.testing.assert_array_equal(_overlay(page, FRAME, (rows, columns)) > 0, corrected > 0)
            assert page.input_value('#rating input[name="branch"]') == "2"

            # Train: vessel_seg fine-tuned on the saved label (one epoch), read back from the PACS
            page.select_option("#train-model", "vessel_seg")
            page.fill("#epochs", "1")
            with page.expect_response(lambda r: "/train/vessel_seg" in r.url and r.request.method == "POST") as started:
                page.click("#train")
            assert started.value.status == 200, started.value.text()
            page.wait_for_function("document.body.dataset.training === 'DONE' || document.body.dataset.training === 'ERROR'", timeout=600_000)
            task = requests.get(f"{url}/train/").json()
            assert task["status"] == "DONE", "\n".join(task.get("details", [])[-20:])

            # Next sample (random): a study without a label, one run of the multi-run series
            page.select_option("#strategy", "random")
            with page.expect_response(lambda r: "/activelearning/random" in r.url) as picked:
                page.click("#next")
            sop = picked.value.json()["id"]
            assert sop in annotation_server["runs"], sop
            _wait(page, "open", sop, 120_000)
            assert page.evaluate("window.xa.state.imageIds.length") == annotation_server["runs"][sop]
            watch.check()
        finally:
            browser.close()


def test_the_page_is_served_with_the_api_and_without_a_build_says_how(tmp_path):
    """``/xa/`` serves the built page (and its files) from the app; where ``dist/`` is absent
    every ``/xa/`` path is a 404 page naming the build script; the page's DICOM route refuses a
    study that is not a DICOM file with a reason."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from monailabel_app.lib import viewer

    app = FastAPI()
    assert viewer.serve_xa_page(app, dist=tmp_path / "absent") is False
    with TestClient(app) as client:
        for path in ("/xa/", "/xa/index.html", "/xa/main.js"):
            r = client.get(path)
            assert r.status_code == 404 and "web/xa_annotator/build.sh" in r.text, path
        assert client.get("/xa", follow_redirects=False).headers["location"] == "/xa/"

    built = tmp_path / "dist"
    built.mkdir()
    (built / "index.html").write_text("<!DOCTYPE html><title>xa</title>")
    (built / "main.js").write_text("console.log(1)")
    app = FastAPI()
    assert viewer.serve_xa_page(app, dist=built) is True
    with TestClient(app) as client:
        assert client.get("/xa/").text.startswith("<!DOCTYPE html>")
        assert client.get("/xa/main.js").status_code == 200
        assert any(getattr(r, "path", "") == "/xa/api/dicom" for r in app.router.routes)


def test_the_dicom_route_refuses_what_is_not_a_dicom_file(tmp_path):
    from fastapi import HTTPException

    from angiokit.data import to_uint, write_png
    from angiokit.data.synthetic import SynthConfig, synthesize
    from monailabel_app.lib import viewer
    from monailabel_app.lib.datastore import EXTENSIONS, AngioDatastore

    write_png(tmp_path / "frame.png", to_uint(synthesize(SynthConfig(size=32), seed=1).image, 8)[0])
    store = AngioDatastore(str(tmp_path), extensions=EXTENSIONS, auto_reload=False)
    with pytest.raises(HTTPException) as refused:
        viewer._dicom_file(store, "frame")
    assert refused.value.status_code == 415 and "not a DICOM file" in refused.value.detail
    with pytest.raises(HTTPException) as unknown:
        viewer._dicom_file(store, "absent")
    assert unknown.value.status_code == 404
