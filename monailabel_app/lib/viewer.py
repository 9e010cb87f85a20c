"""The XA annotation page (``web/xa_annotator``, Cornerstone3D) served by the app at ``/xa/``.

The page is a built bundle in ``web/xa_annotator/dist/`` (``web/xa_annotator/build.sh``; not
versioned). Where it has not been built, every ``/xa/`` path answers an HTTP 404 page that says
so. The page talks to the server that serves it (relative URLs): MONAI Label's own endpoints
(``/datastore``, ``/infer``, ``/train``, ``/activelearning``, ``/info``) and one added here:

- ``GET /xa/api/dicom?image=ID``: the DICOM file of a study (a multi-frame XA instance, as the
  folder or the PACS holds it), for the page's DICOM image loader (``wadouri:``). With a
  DICOMweb datastore it is the instance the app downloaded from the PACS for that study (for
  a run of a multi-run series, that run's instance). A study that is not one DICOM file (a PNG
  frame, a NIfTI, a series of single frames) answers 415 saying so.
- ``GET /xa/api/study?image=ID``: what the page needs to open it: ``frames``, ``rows``,
  ``columns`` (of that DICOM file), ``series`` / ``instance`` (its UIDs), ``label`` (whether a
  final label is saved) and ``rating`` (the saved quality rating, or null).
- ``GET /xa/api/label?image=ID``: the saved final label (NIfTI) of a study, to correct it again
  (MONAI Label's ``/datastore/label`` asks a DICOMweb datastore for a SEG series id instead).
"""

from __future__ import annotations

import html
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from fastapi import HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

logger = logging.getLogger(__name__)

PATH = "/xa"
REPO = Path(os.path.realpath(__file__)).parents[2]  # through the link of a test's app folder
SOURCE = REPO / "web" / "xa_annotator"
DIST = SOURCE / "dist"
DICOM_SUFFIXES = (".dcm", ".dicom", "")


def not_built_page(dist: Path = DIST) -> HTMLResponse:
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>XA annotation page not built</title></head>
<body style="font-family:sans-serif;margin:2em"><h1>The XA annotation page is not built</h1>
<p>This server serves the browser annotation page from <code>{html.escape(str(dist))}</code>, which does not exist.
Build it once (Node.js and npm needed, with access to the npm registry):</p>
<pre>web/xa_annotator/build.sh</pre>
<p>then reload this page. The REST API works without it: <a href="/">API page</a>.</p></body></html>"""
    return HTMLResponse(body, status_code=404)


def _dicom_file(datastore, image_id: str) -> str:
    """The DICOM file of study ``image_id``; HTTPException 404 / 409 / 415 / 422 / 502 otherwise."""
    import requests

    from .dicomweb import AngioDICOMwebDatastore, _pacs_error

    if isinstance(datastore, AngioDICOMwebDatastore):
        run = datastore._run(image_id)  # 404 / 409 (a split series)
        datastore.get_image_uri(image_id)  # downloads the instance(s) once, converts them (422 / 502)
        folder = os.path.join(datastore._datastore.image_path(), image_id)
        if not os.path.isdir(folder) or not any(f.endswith(".dcm") for f in os.listdir(folder)):
            try:  # converted earlier and the instance folder removed since
                datastore._download(run, folder)
            except requests.RequestException as e:
                raise _pacs_error(str(run), e) from e
        try:
            return datastore._instance_file(image_id)
        except ValueError as e:
            raise HTTPException(status_code=415, detail=f"study {image_id} is not one DICOM file: {e}") from e
    if image_id not in datastore.list_images():
        raise HTTPException(status_code=404, detail=f"study {image_id!r} is not in the datastore")
    path = datastore.get_image_uri(image_id)
    if not path or not os.path.isfile(path):
        raise HTTPException(status_code=404, detail=f"study {image_id!r} has no image file")
    with open(path, "rb") as f:
        head = f.read(132)
    if head[128:132] != b"DICM":
        name = os.path.basename(path)
        raise HTTPException(status_code=415, detail=f"study {image_id} ({name}) is not a DICOM file; the XA page opens DICOM cines (open other studies in 3D Slicer)")
    return path


def _final_label(datastore, image_id: str) -> str:
    """The local file of the study's final label ("" where none is saved)."""
    from monailabel.datastore.local import LocalDatastore
    from monailabel.interfaces.datastore import DefaultLabelTag

    label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
    if not label_id or not isinstance(datastore, LocalDatastore):
        return ""
    path = LocalDatastore.get_label_uri(datastore, label_id, DefaultLabelTag.FINAL)  # not the PACS's SEG series
    return path if path and os.path.isfile(path) else ""


def _rating(datastore, image_id: str) -> Optional[dict]:
    label_id = datastore.get_label_by_image_id(image_id, "quality")
    if not label_id:
        return None
    info = datastore.get_label_info(label_id, "quality") or {}
    return info.get("rating")


def study(datastore, image_id: str) -> dict:
    import pydicom

    path = _dicom_file(datastore, image_id)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {
        "image": image_id,
        "frames": int(getattr(ds, "NumberOfFrames", 1) or 1),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "modality": str(getattr(ds, "Modality", "")),
        "series": str(getattr(ds, "SeriesInstanceUID", "")),
        "instance": str(getattr(ds, "SOPInstanceUID", "")),
        "label": bool(_final_label(datastore, image_id)),
        "rating": _rating(datastore, image_id),
    }


def serve_xa_page(app=None, dist: Optional[Path] = None) -> bool:
    """Mount the page at ``/xa/`` (or the not-built 404 page) and its DICOM route; returns
    whether the built page was found."""
    if app is None:
        app = getattr(sys.modules.get("monailabel.app"), "app", None)
        if app is None:
            return False
    dist = Path(dist or DIST)
    built = (dist / "index.html").is_file()
    app.router.routes[:] = [r for r in app.router.routes if not str(getattr(r, "path", "")).startswith(PATH)]

    def dicom(image: str):
        from monailabel.interfaces.utils.app import app_instance

        return FileResponse(_dicom_file(app_instance().datastore(), image), media_type="application/dicom")

    def study_info(image: str):
        from monailabel.interfaces.utils.app import app_instance

        return study(app_instance().datastore(), image)

    def label(image: str):
        from monailabel.interfaces.utils.app import app_instance

        path = _final_label(app_instance().datastore(), image)
        if not path:
            raise HTTPException(status_code=404, detail=f"study {image!r} has no saved final label")
        return FileResponse(path, media_type="application/octet-stream", filename=os.path.basename(path))

    app.add_api_route(f"{PATH}/api/study", study_info, methods=["GET"], summary="What the XA annotation page needs to open a study", tags=["Others"])
    app.add_api_route(f"{PATH}/api/label", label, methods=["GET"], summary="The saved final label of a study, for the XA annotation page", tags=["Others"])
    app.add_api_route(f"{PATH}/api/dicom", dicom, methods=["GET"], include_in_schema=True, summary="The DICOM file of a study, for the XA annotation page", tags=["Others"])
    app.add_api_route(PATH, lambda: RedirectResponse(f"{PATH}/"), methods=["GET"], include_in_schema=False)
    if built:
        app.mount(PATH, StaticFiles(directory=str(dist), html=True), name="xa-annotator")
        logger.info(f"XA annotation page at {PATH}/ (from {dist})")
    else:
        app.add_api_route(PATH + "/{rest:path}", lambda rest="": not_built_page(dist), methods=["GET"], include_in_schema=False)
        logger.info(f"XA annotation page not built ({dist} absent): {PATH}/ answers 404; run web/xa_annotator/build.sh")
    return built
