"""The MONAI Label app on a DICOMweb series that holds several multi-frame runs of different
lengths (the phantom cines of ../shared/data/dicom_xa: eight XA instances of 8 to 16 frames filed
under one SeriesInstanceUID, as published), and the server's API page offline (issue 32, items 5
and 6).

MONAI Label downloads a series into one folder and stacks its files as slices of one volume:
SimpleITK failed on these runs ("ImageIO returns IO region that does not fully contain the
requested region"), scoring logged the failure and ``/infer/vessel_seg`` answered a bare 500.
Here each instance is a cine of its own (``monailabel_app/lib/dicomweb.py``)."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest

from angiokit.data import read_angiogram, to_uint, write_png
from angiokit.data.synthetic import SynthConfig, synthesize

from .conftest import running_server, shared_data
from .test_monailabel_app import SEG, _put_label, _wait, orthanc  # noqa: F401  (orthanc: the PACS fixture, Orthanc on a free loopback port)

requests = pytest.importorskip("requests")

PHANTOM = "phantom_vukicevic_IM{}.dcm"


def _headers(path):
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True)


@pytest.fixture(scope="module")
def multirun(orthanc, tmp_path_factory):  # noqa: F811
    """The eight phantom runs in Orthanc and the app served on it (vessel_seg only, tiny sizes)."""
    folder = shared_data("dicom_xa")
    paths = [folder / PHANTOM.format(i) for i in range(1, 9)]
    if not all(p.exists() for p in paths):
        pytest.skip(f"the phantom cines are not all in {folder}")
    headers = [_headers(p) for p in paths]
    series = {str(h.SeriesInstanceUID) for h in headers}
    assert len(series) == 1, f"the phantom runs are expected in one series, as published: {series}"
    runs = {str(h.SOPInstanceUID): {"frames": int(h.NumberOfFrames), "path": p} for h, p in zip(headers, paths)}
    assert len({r["frames"] for r in runs.values()}) > 1, "runs of different lengths"
    for path in paths:
        r = requests.post(f"{orthanc}/instances", data=path.read_bytes())
        assert r.status_code == 200 and r.json()["Status"] == "Success", r.text
    root = tmp_path_factory.mktemp("multirun")
    conf = {"models": "vessel_seg", "model_dir": str(root / "model"), "vessel_seg_config": json.dumps(SEG), "epistemic_passes": "2"}
    with running_server(root, f"{orthanc}/dicom-web", conf, env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(root / "cache")}) as (url, log):
        yield {"url": url, "log": log, "orthanc": orthanc, "series": series.pop(), "runs": runs}


def _log(server) -> str:
    return server["log"].read_text()[-4000:]


def test_a_multi_run_series_is_one_cine_per_instance_and_never_a_500(multirun, tmp_path):
    url, series, runs = multirun["url"], multirun["series"], multirun["runs"]

    # the study list: one study per instance, with its series, instance and frame count
    assert requests.get(f"{url}/datastore/").json()["total"] == len(runs)
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}).json()["objects"]
    assert set(objects) == set(runs) and series not in objects
    for sop, run in runs.items():
        info = requests.get(f"{url}/datastore/image/info", params={"image": sop}).json()
        assert (info["SeriesInstanceUID"], info["SOPInstanceUID"], info["NumberOfFrames"]) == (series, sop, run["frames"]), info
        assert objects[sop]["image"]["info"]["NumberOfFrames"] == run["frames"]

    # the series itself is no image: a JSON error that names it and its runs, not a 500
    r = requests.post(f"{url}/infer/vessel_seg", params={"image": series, "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert series in detail and all(sop in detail for sop in runs), detail

    # one run: a label with that instance's frames
    sop = min(runs, key=lambda s: runs[s]["frames"])
    r = requests.post(f"{url}/infer/vessel_seg", params={"image": sop, "output": "image"}, data={"params": json.dumps({"device": "cpu"})})
    assert r.status_code == 200, r.text + _log(multirun)
    (tmp_path / "label.nii.gz").write_bytes(r.content)
    label = read_angiogram(tmp_path / "label.nii.gz", volume_as_frames=True).frames
    assert label.shape == read_angiogram(runs[sop]["path"]).frames.shape == (runs[sop]["frames"], 512, 512)
    assert set(np.unique(label)) <= {0.0, 1.0}

    # saved as the run's final label: a DICOM SEG in the PACS that references that instance
    assert _put_label({"url": url}, sop, tmp_path / "label.nii.gz").status_code == 200
    from dicomweb_client import DICOMwebClient

    import pydicom

    client = DICOMwebClient(f"{multirun['orthanc']}/dicom-web")
    segs = client.search_for_series(search_filters={"Modality": "SEG"})
    assert len(segs) == 1
    meta = client.retrieve_series_metadata(segs[0]["0020000D"]["Value"][0], segs[0]["0020000E"]["Value"][0])[0]
    meta = pydicom.Dataset.from_json(meta, bulk_data_uri_handler=lambda tag, vr, uri: b"")  # the SEG's pixels are not needed
    ref = meta.ReferencedSeriesSequence[0]
    assert (str(ref.SeriesInstanceUID), str(ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID)) == (series, sop)
    assert requests.get(f"{url}/datastore/").json()["completed"] == 1
    train = requests.get(f"{url}/datastore/", params={"output": "train"}).json()  # what training reads
    assert [(d["image"].rsplit("/", 1)[-1], d["label"].rsplit("/", 1)[-1]) for d in train] == [(f"{sop}.nii.gz", f"{sop}.nii.gz")]

    # scoring and the next sample by active learning: no failure, a run without a label
    r = requests.post(f"{url}/scoring/epistemic", json={"device": "cpu", "max_samples": 1})
    assert r.status_code == 200, r.text
    task = _wait(multirun, "scoring")
    assert task["status"] == "DONE" and any('"scored": 1, "failed": 0' in line for line in task["details"]), "\n".join(task["details"])
    scored = [s for s in runs if "epistemic_entropy" in requests.get(f"{url}/datastore/image/info", params={"image": s}).json()]
    assert len(scored) == 1 and scored[0] != sop
    r = requests.post(f"{url}/activelearning/epistemic", json={})
    assert r.status_code == 200, r.text + _log(multirun)
    assert r.json()["id"] == scored[0] and r.json()["path"].endswith(".nii.gz")


# ---- the API page: nothing from another host -------------------------------------------------


def _assets(page: str) -> list:
    """The URLs of a page's scripts, style sheets and icons."""
    return re.findall(r"<script[^>]*\bsrc=[\"']([^\"']+)", page) + re.findall(r"<link[^>]*\bhref=[\"']([^\"']+)", page)


def test_the_api_page_works_offline(tmp_path):
    """``/`` and ``/docs`` load no script or style from another host (MONAI Label's load Swagger
    UI and ReDoc from a CDN: blank offline), and what they load answers 200."""
    s = synthesize(SynthConfig(size=32), seed=1)
    write_png(tmp_path / "studies" / "frame.png", to_uint(s.image, 8)[0])
    conf = {"models": "vessel_seg", "model_dir": str(tmp_path / "model"), "vessel_seg_config": json.dumps(SEG)}
    with running_server(tmp_path, tmp_path / "studies", conf) as (url, log):
        for path in ("/", "/docs"):
            r = requests.get(f"{url}{path}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (path, r.status_code)
            assert "cdn." not in r.text and "fonts.googleapis" not in r.text, path
            assets = _assets(r.text)
            assert "/favicon.ico" in assets, assets
            for asset in assets:
                full = urljoin(f"{url}{path}", asset)
                assert urlparse(full).netloc == urlparse(url).netloc, (path, asset)
                assert requests.get(full).status_code == 200, (path, asset)
        page = requests.get(f"{url}/").text
        assert "SwaggerUIBundle(" in page and "/api-assets/swagger-ui-bundle.js" in page  # swagger-ui-bundle is a requirement
        assert "/info/" in requests.get(f"{url}/openapi.json").json()["paths"]  # what the page shows


def test_without_swagger_ui_the_api_page_is_plain_html_from_the_schema(monkeypatch):
    """Where ``swagger-ui-bundle`` is missing, ``/`` and ``/docs`` are a page of the API made from
    the OpenAPI schema: every route on it, no script, nothing from another host."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from monailabel_app.lib import apidocs

    monkeypatch.setattr(apidocs, "swagger_ui_assets", lambda: None)
    app = FastAPI(title="t", openapi_url="/openapi.json", docs_url=None, redoc_url="/docs")

    @app.get("/info/", summary="what the server serves")
    def info(model: str = ""):
        return {}

    with TestClient(app) as client:
        assert apidocs.serve_api_page_offline(app) == "plain"
        for path in ("/", "/docs"):
            page = client.get(path).text
            assert "/info/" in page and "what the server serves" in page and "model" in page
            assert "<script" not in page and "http://" not in page and "https://" not in page


def test_a_series_that_does_not_make_one_image_is_a_json_error_naming_it(orthanc, tmp_path):  # noqa: F811
    """Two single-frame instances of different sizes in one series (not split: no run in it)
    cannot be stacked into one image: an HTTP 422 naming the series and what was expected
    (FastAPI answers it as JSON), not SimpleITK's error as a bare 500. Asked of the datastore
    itself, with a search filter (Modality RF) that keeps this series out of the other tests."""
    import pydicom
    from fastapi import HTTPException
    from monailabel.datastore.dicom import DICOMwebClientX
    from pydicom.uid import generate_uid

    from angiokit.data import write_dicom_xa
    from monailabel_app.lib.dicomweb import AngioDICOMwebDatastore

    study, series = generate_uid(), generate_uid()
    for i, rows in enumerate((40, 48)):
        image = to_uint(synthesize(SynthConfig(size=64), seed=i).image, 8)[0, :rows]
        path = write_dicom_xa(tmp_path / f"spot{i}.dcm", image, 0.3, study_uid=study, series_uid=series, instance_number=i + 1)
        ds = pydicom.dcmread(path)
        ds.Modality = "RF"
        ds.save_as(path)
        assert requests.post(f"{orthanc}/instances", data=open(path, "rb").read()).status_code == 200
    store = AngioDICOMwebDatastore(DICOMwebClientX(url=f"{orthanc}/dicom-web"), {"Modality": "RF"}, cache_path=str(tmp_path / "cache"))
    try:
        assert store.list_images() == [series]
        with pytest.raises(HTTPException) as refused:
            store.get_image_uri(series)
        assert refused.value.status_code == 422 and f"series {series} (2 DICOM file(s)) cannot be read as one image" in refused.value.detail, refused.value.detail
        assert "Size mismatch" in refused.value.detail and str(tmp_path) not in refused.value.detail  # why, without the server's folders
        with pytest.raises(HTTPException) as unknown:
            store.get_image_uri("1.2.3.4.not.in.the.pacs")
        assert unknown.value.status_code == 404 and "not among" in unknown.value.detail
    finally:
        observer = getattr(store, "_observer", None)
        if observer is not None:
            observer.stop()
