"""A DICOMweb PACS (Orthanc, DCM4CHEE, Google Healthcare...) as the app's datastore.

MONAI Label's DICOMweb datastore, for X-ray angiography: it lists XA series (unless
MONAI_LABEL_DICOMWEB_SEARCH_FILTER says otherwise), checks uploads as the local datastore does,
and writes final labels as DICOM SEG with ``angiokit.data.dicom_seg`` (one SEG frame per cine
frame, each pointing at its frame of the XA instance), stored back in the PACS. MONAI Label's
own converter and dcmqi treat a series as slices of a volume, not as frames of one multi-frame
instance, and dcmqi would be downloaded at start (the app must run offline).

A series that holds several instances of which one at least is multi-frame (the runs of an
acquisition filed under one series, of different lengths) is not one image: MONAI Label would
download the whole series into one folder and stack its files as slices of one volume
(SimpleITK's ``ImageSeriesReader``), which fails on runs of different lengths ("ImageIO returns
IO region that does not fully contain the requested region") and gave a bare 500. Here each of
its instances is a study of its own, a cine whose id is its SOPInstanceUID: only that instance
is downloaded, its info names its series, instance and number of frames, and its final label is
a DICOM SEG that references that instance. Any other series stays one study under its
SeriesInstanceUID, as in MONAI Label. Asking for a split series by its SeriesInstanceUID answers
409 with the ids of its runs; a study that cannot be read as one image answers 422 naming its
series (and instance) and why; a PACS that does not answer, 502; an id the PACS does not list, 404.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import requests
from dicomweb_client.session_utils import create_session_from_user_pass
from fastapi import HTTPException
from filelock import FileLock
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore, DICOMwebClientX
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.datastore.utils.convert import dicom_to_nifti
from monailabel.datastore.utils.dicom import dicom_web_download_series, dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from angiokit.data import AngioDataError, read_angiogram, write_nifti
from angiokit.data.dicom_seg import read_dicom_seg, write_dicom_seg

from .datastore import AtomicWrites, atomic_copy, check_label, check_name, fresh_from_disk, refuse

logger = logging.getLogger(__name__)

MONAI_LABEL_DEFAULT_FILTER = {"Modality": "CT"}
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
INSTANCE_NUMBER, NUMBER_OF_FRAMES, SERIES_INSTANCES = "00200013", "00280008", "00201209"


def angio_dicomweb_datastore(url: str) -> "AngioDICOMwebDatastore":
    session = None
    user = settings.MONAI_LABEL_DATASTORE_USERNAME or settings.MONAI_LABEL_DICOMWEB_USERNAME
    password = settings.MONAI_LABEL_DATASTORE_PASSWORD or settings.MONAI_LABEL_DICOMWEB_PASSWORD
    if user and password:
        session = create_session_from_user_pass(user, password)
    client = DICOMwebClientX(
        url=url,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    search = settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER
    search = {"Modality": "XA"} if not search or search == MONAI_LABEL_DEFAULT_FILTER else search
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
    return AngioDICOMwebDatastore(client, search, cache_path=cache, fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME)


def _value(item: Dict[str, Any], tag: str) -> Optional[Any]:
    """The first value of ``tag`` in a DICOM JSON object (QIDO-RS answer), or None."""
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _int(item: Dict[str, Any], tag: str) -> Optional[int]:
    value = _value(item, tag)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Run:
    """What one image id of the datastore is in the PACS: a whole series (``instance`` empty),
    or one instance of a series that holds several runs."""

    study: str
    series: str
    instance: str = ""  # SOPInstanceUID, for a run of a split series
    frames: int = 0  # its NumberOfFrames (0: not asked)
    number: Optional[int] = None  # its InstanceNumber

    def __str__(self) -> str:
        if not self.instance:
            return f"series {self.series}"
        return f"instance {self.instance} (InstanceNumber {self.number}, {self.frames} frames) of series {self.series}"

    def info(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"StudyInstanceUID": self.study, "SeriesInstanceUID": self.series}
        if self.instance:
            info.update({"SOPInstanceUID": self.instance, "NumberOfFrames": self.frames, "InstanceNumber": self.number})
        return info


class _Listing:
    """The PACS's studies as image ids (``runs``) and the series split into their runs
    (``split``: series -> ids), kept ``ttl`` seconds as MONAI Label keeps its series list."""

    def __init__(self, ttl: float):
        self.ttl, self.lock, self.at, self.value = ttl, threading.Lock(), 0.0, None

    def get(self, compute):
        with self.lock:
            if self.value is None or time.monotonic() - self.at > self.ttl:
                self.value, self.at = compute(), time.monotonic()
            return self.value

    def clear(self):
        with self.lock:
            self.value = None


def _pacs_error(what: str, error: Exception) -> HTTPException:
    logger.warning(f"PACS error for {what}: {error}")
    return HTTPException(status_code=502, detail=f"the PACS did not answer for {what}: {type(error).__name__}: {error}")


@fresh_from_disk
class AngioDICOMwebDatastore(AtomicWrites, DICOMWebDatastore):
    def __init__(self, client, search_filter: Dict[str, Any], cache_path=None, fetch_by_frame=False):
        self._listing = _Listing(settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY)
        self._segs = _Listing(settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY)
        super().__init__(client, search_filter, cache_path=cache_path, fetch_by_frame=fetch_by_frame, convert_to_nifti=True)

    # ---- what the PACS holds, as studies ----------------------------------------------------

    def _list_runs(self) -> Tuple[Dict[str, Run], Dict[str, List[str]]]:
        runs: Dict[str, Run] = {}
        split: Dict[str, List[str]] = {}
        try:
            found = self._client.search_for_series(search_filters=self._search_filter, fields=["NumberOfSeriesRelatedInstances"])
            for item in found:
                study, series = str(_value(item, STUDY_UID)), str(_value(item, SERIES_UID))
                count = _int(item, SERIES_INSTANCES)
                instances = [] if count == 1 else self._client.search_for_instances(study, series, fields=["NumberOfFrames", "InstanceNumber"])
                frames = {str(_value(i, SOP_UID)): _int(i, NUMBER_OF_FRAMES) or 1 for i in instances}
                if len(instances) > 1 and max(frames.values()) > 1:  # several runs in one series
                    instances.sort(key=lambda i: (_int(i, INSTANCE_NUMBER) is None, _int(i, INSTANCE_NUMBER) or 0, str(_value(i, SOP_UID))))
                    split[series] = []
                    for i in instances:
                        sop = str(_value(i, SOP_UID))
                        runs[sop] = Run(study, series, sop, frames[sop], _int(i, INSTANCE_NUMBER))
                        split[series].append(sop)
                    logger.info(f"series {series} holds {len(instances)} runs ({', '.join(str(frames[s]) for s in split[series])} frames): one study each")
                else:
                    runs[series] = Run(study, series)
        except requests.RequestException as e:
            raise _pacs_error(f"the {self._search_filter} series", e) from e
        return runs, split

    def _runs(self) -> Tuple[Dict[str, Run], Dict[str, List[str]]]:
        return self._listing.get(self._list_runs)

    def list_images(self) -> List[str]:
        return list(self._runs()[0])

    def _run(self, image_id: str) -> Run:
        runs, split = self._runs()
        if image_id in runs:
            return runs[image_id]
        if image_id in split:
            listed = ", ".join(f"{sop} ({runs[sop].frames} frames)" for sop in split[image_id])
            raise HTTPException(
                status_code=409,
                detail=f"series {image_id} holds {len(split[image_id])} multi-frame instances (runs of different lengths), not one image: each is a study of its own; ask for one of their SOPInstanceUIDs: {listed}",
            )
        raise HTTPException(status_code=404, detail=f"series {image_id!r} is not among the PACS's {self._search_filter} series (nor an instance of one of them split into its runs)")

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        info = super().get_image_info(image_id)
        run = self._runs()[0].get(image_id)
        return {**run.info(), **info} if run else info

    def json(self):
        """The cache's record, with every study the PACS lists (each run of a split series too),
        downloaded or not."""
        data = super().json()
        objects = data.setdefault("objects", {})
        for image_id, run in self._runs()[0].items():
            if image_id not in objects:
                objects[image_id] = ImageLabelModel(image=DataModel(info=run.info())).model_dump()
        return data

    # ---- an image: its instance(s) downloaded, converted to NIfTI once ------------------------

    def _download(self, run: Run, folder: str) -> None:
        if not run.instance:
            dicom_web_download_series(run.study, run.series, folder, self._client, self._fetch_by_frame)
            return
        os.makedirs(folder, exist_ok=True)
        instance = self._client.retrieve_instance(run.study, run.series, run.instance)
        fd, part = tempfile.mkstemp(dir=os.path.dirname(folder), prefix=".download", suffix=".part")
        os.close(fd)
        try:
            instance.save_as(part)
            os.replace(part, os.path.join(folder, f"{run.instance}.dcm"))
        finally:
            if os.path.exists(part):
                os.remove(part)

    def get_image_uri(self, image_id: str) -> str:
        run = self._run(image_id)  # 404 / 409
        image_dir = os.path.realpath(os.path.join(self._datastore.image_path(), image_id))
        image_nii_gz = os.path.realpath(os.path.join(self._datastore.image_path(), f"{image_id}.nii.gz"))
        if os.path.exists(image_nii_gz):
            return image_nii_gz
        converted = ""
        try:
            if not os.path.isdir(image_dir) or not os.listdir(image_dir):
                self._download(run, image_dir)
            converted = dicom_to_nifti(image_dir)
            info = {**self._dicom_info(run.series), **run.info()}
        except requests.RequestException as e:
            raise _pacs_error(str(run), e) from e
        except Exception as e:  # SimpleITK / GDCM: files that do not make one image
            files = len(os.listdir(image_dir)) if os.path.isdir(image_dir) else 0
            reason = str(e).replace(image_dir + os.sep, "").strip().splitlines()  # file names, not the server's folders
            detail = f"{run} ({files} DICOM file(s)) cannot be read as one image; expected one multi-frame XA instance, or single-frame instances of one size ({reason[-1] if reason else type(e).__name__})"
            logger.warning(f"study {image_id}: {detail}")
            raise HTTPException(status_code=422, detail=detail) from e
        try:
            with FileLock(self._lock_file):  # as LocalDatastore.add_image, but the copy is atomic
                atomic_copy(converted, image_nii_gz)
                info.update({"ts": int(time.time()), "name": os.path.basename(image_nii_gz)})
                self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=".nii.gz"))
                self._update_datastore_file(lock=False)
        finally:
            if converted and os.path.exists(converted):
                os.remove(converted)
        return image_nii_gz

    def _instance_file(self, image_id: str) -> str:
        folder = os.path.join(self._datastore.image_path(), image_id)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".dcm"))
        if len(files) != 1:
            raise ValueError(f"series {image_id} has {len(files)} instances; a DICOM SEG here is written for one multi-frame XA instance")
        return os.path.join(folder, files[0])

    # ---- labels: DICOM SEG in the PACS, each referencing its series (and instance) -------------

    def _list_segs(self) -> List[Tuple[str, str]]:
        """(image id, SEG series) for each SEG series of the PACS that references a study here."""
        runs, split = self._runs()
        found = []
        try:
            for seg in self._client.search_for_series(search_filters={"Modality": "SEG"}):
                study, seg_series = str(_value(seg, STUDY_UID)), str(_value(seg, SERIES_UID))
                meta = Dataset.from_json(self._client.retrieve_series_metadata(study, seg_series)[0])
                refs = meta.get("ReferencedSeriesSequence")
                if not refs:
                    logger.warning(f"Label Ignored:: ReferencedSeriesSequence is NOT found: {seg_series}")
                    continue
                series = str(refs[0].SeriesInstanceUID)
                if series in split:  # a run of a split series: the instance it references
                    sops = [str(i.ReferencedSOPInstanceUID) for i in refs[0].get("ReferencedInstanceSequence", [])]
                    image = next((s for s in sops if s in runs), None)
                else:
                    image = series if series in runs else None
                if image is None:
                    logger.warning(f"Label Ignored:: SEG {seg_series} references no study of this datastore (series {series})")
                    continue
                found.append((image, seg_series))
        except requests.RequestException as e:
            raise _pacs_error("the SEG series", e) from e
        return found

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return sorted({image for image, _ in self._segs.get(self._list_segs)})

    def _download_labeled_data(self):
        segs = self._segs.get(self._list_segs)
        invalid = set(LocalDatastore.get_labeled_images(self)) - {image for image, _ in segs}
        for image_id in invalid:  # as MONAI Label: a local final label whose SEG left the PACS goes
            logger.info(f"Label {image_id} not exist on remote;  Remove from local")
            label_uri = LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)
            if label_uri and os.path.exists(label_uri):
                shutil.rmtree(os.path.join(os.path.dirname(label_uri), image_id), ignore_errors=True)
                os.unlink(label_uri)
        for image_id, seg_series in segs:
            self.get_image_uri(image_id)
            self.get_label_uri(label_id=seg_series, label_tag=DefaultLabelTag.FINAL, image_id=image_id)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any], label_id: str = "") -> str:
        check_name(label_tag, "label tag")
        image_uri = self.get_image_uri(image_id)
        run = self._run(image_id)
        try:
            label_info = dict(check_label(image_uri, label_filename, label_tag, label_info) or {})
            if label_tag == DefaultLabelTag.FINAL:
                mask = read_angiogram(label_filename, volume_as_frames=True).frames > 0
                with tempfile.TemporaryDirectory() as tmp:
                    seg = write_dicom_seg(os.path.join(tmp, "seg.dcm"), mask, self._instance_file(image_id))
                    label_info["SeriesInstanceUID"] = dicom_web_upload_dcm(seg, self._client)
                self._segs.clear()  # labelled from now on
                label_info.update({k: v for k, v in self.get_image_info(image_id).items() if k in ("Modality", "PatientID", "StudyInstanceUID")})
                if run.instance:
                    label_info["ReferencedSOPInstanceUID"] = run.instance
        except (ValueError, AngioDataError) as e:
            raise refuse(f"label for {run} ({label_tag})", e, label_filename) from e
        except requests.RequestException as e:
            raise _pacs_error(f"the DICOM SEG of {run}", e) from e
        return self._store_label(image_id, label_filename, label_tag, label_info)

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        if label_tag != DefaultLabelTag.FINAL:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        local = LocalDatastore.get_label_uri(self, image_id, label_tag) if image_id else ""
        if local and os.path.exists(local):
            return local
        folder = os.path.realpath(os.path.join(self._datastore.label_path(label_tag), label_id))
        if not os.path.isdir(folder) or not os.listdir(folder):
            dicom_web_download_series(None, label_id, folder, self._client, self._fetch_by_frame)
        seg = os.path.join(folder, sorted(os.listdir(folder))[0])
        with tempfile.TemporaryDirectory() as tmp:
            nifti = write_nifti(os.path.join(tmp, f"{image_id}.nii.gz"), read_dicom_seg(seg).astype("uint8"))
            self._store_label(image_id, nifti, label_tag, {"SeriesInstanceUID": label_id})
        return LocalDatastore.get_label_uri(self, image_id, label_tag)
