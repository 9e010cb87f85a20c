"""A DICOMweb PACS (Orthanc, DCM4CHEE, Google Healthcare...) as the app's datastore.

MONAI Label's DICOMweb datastore, for X-ray angiography: it lists XA series (unless
MONAI_LABEL_DICOMWEB_SEARCH_FILTER says otherwise), checks uploads as the local datastore does,
and writes final labels as DICOM SEG with ``angiokit.data.dicom_seg`` (one SEG frame per cine
frame, each pointing at its frame of the XA instance), stored back in the PACS. MONAI Label's
own converter and dcmqi treat a series as slices of a volume, not as frames of one multi-frame
instance, and dcmqi would be downloaded at start (the app must run offline).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict

from dicomweb_client.session_utils import create_session_from_user_pass
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore, DICOMwebClientX
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.dicom import dicom_web_download_series, dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag

from angiokit.data import AngioDataError, read_angiogram, write_nifti
from angiokit.data.dicom_seg import read_dicom_seg, write_dicom_seg

from .datastore import AtomicWrites, check_label, check_name, fresh_from_disk, refuse

logger = logging.getLogger(__name__)

MONAI_LABEL_DEFAULT_FILTER = {"Modality": "CT"}


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


@fresh_from_disk
class AngioDICOMwebDatastore(AtomicWrites, DICOMWebDatastore):
    def __init__(self, client, search_filter: Dict[str, Any], cache_path=None, fetch_by_frame=False):
        super().__init__(client, search_filter, cache_path=cache_path, fetch_by_frame=fetch_by_frame, convert_to_nifti=True)

    def get_image_uri(self, image_id: str) -> str:
        if image_id not in self.list_images():
            raise HTTPException(status_code=404, detail=f"series {image_id!r} is not among the PACS's {self._search_filter} series")
        return super().get_image_uri(image_id)

    def _instance_file(self, image_id: str) -> str:
        folder = os.path.join(self._datastore.image_path(), image_id)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".dcm"))
        if len(files) != 1:
            raise ValueError(f"series {image_id} has {len(files)} instances; a DICOM SEG here is written for one multi-frame XA instance")
        return os.path.join(folder, files[0])

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any], label_id: str = "") -> str:
        check_name(label_tag, "label tag")
        image_uri = self.get_image_uri(image_id)
        try:
            label_info = dict(check_label(image_uri, label_filename, label_tag, label_info) or {})
            if label_tag == DefaultLabelTag.FINAL:
                mask = read_angiogram(label_filename, volume_as_frames=True).frames > 0
                with tempfile.TemporaryDirectory() as tmp:
                    seg = write_dicom_seg(os.path.join(tmp, "seg.dcm"), mask, self._instance_file(image_id))
                    label_info["SeriesInstanceUID"] = dicom_web_upload_dcm(seg, self._client)
                label_info.update({k: v for k, v in self.get_image_info(image_id).items() if k in ("Modality", "PatientID", "StudyInstanceUID")})
        except (ValueError, AngioDataError) as e:
            raise refuse(f"label for series {image_id} ({label_tag})", e, label_filename) from e
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
