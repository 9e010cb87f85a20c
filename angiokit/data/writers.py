"""Write angiograms and masks as PNG, DICOM XA and NIfTI, atomically.

Every writer writes a temporary file in the destination folder and renames it into place, so
an interrupted run never leaves a truncated file where a good one was.

Layouts (the readers in ``readers`` invert them exactly):
    PNG    one frame, grey, 8- or 16-bit; masks as {0, 255} (see ``write_mask_png``).
    DICOM  X-Ray Angiographic Image Storage, MONOCHROME2, multi-frame when T > 1 (cine module
           with FrameTime), ImagerPixelSpacing, explicit VR little endian, uncompressed.
    NIfTI  data (H, W) for a frame and (H, W, 1, T) for a cine (time is NIfTI's 4th axis); the
           affine maps rows to posterior and columns to patient left, so the frame shows upright
           in the axial view of 3D Slicer / ITK-SNAP; pixdim[4] is the frame time in ms.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from typing import Iterator, Optional

import numpy as np

from .errors import AngioDataError

XA_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.12.1"


def process_umask() -> int:
    """This process's umask, read without changing it where Linux tells it (``os.umask`` sets
    it, and a file another thread creates in between would get the wrong permissions)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    umask = os.umask(0o077)  # while unknown, the strictest of the usual ones
    os.umask(umask)
    return umask


FILE_MODE = 0o666 & ~process_umask()  # what open() gives a new file; mkstemp gives 0600
FRAME_TIME_TAG = 0x00181063


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + "".join(_suffixes(base)), dir=folder)
    os.close(fd)
    os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _suffixes(name: str) -> list:
    return [".nii.gz"] if name.lower().endswith(".nii.gz") else [os.path.splitext(name)[1]]


def to_uint(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (bits 8) or uint16 (bits 12 or 16, full scale 2**bits - 1)."""
    if bits not in (8, 12, 16):
        raise ValueError(f"bits must be 8, 12 or 16, got {bits}")
    scale = 2**bits - 1
    out = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * scale)
    return out.astype(np.uint8 if bits == 8 else np.uint16)


def _as_frames(array: np.ndarray, path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise AngioDataError(path, f"cannot write array of shape {array.shape}; expected [H, W] or [T, H, W]")
    return array


def _check_integer(array: np.ndarray, path) -> None:
    if array.dtype not in (np.uint8, np.uint16):
        raise AngioDataError(path, f"expected uint8 or uint16 pixels, got {array.dtype}; convert with to_uint()")


def write_png(path, image: np.ndarray) -> str:
    """One frame ([H, W] or [1, H, W], uint8 or uint16) as a grey PNG."""
    from PIL import Image

    frames = _as_frames(image, path)
    if frames.shape[0] != 1:
        raise AngioDataError(path, f"PNG holds one frame, got {frames.shape[0]}; write frames one by one or use DICOM/NIfTI")
    _check_integer(frames, path)
    with atomic_path(path) as tmp:
        Image.fromarray(frames[0]).save(tmp, format="PNG")
    return os.fspath(path)


def write_mask_png(path, mask: np.ndarray) -> str:
    """Binary mask as an 8-bit PNG with values {0, 255} (the XCAD / ARCADE convention)."""
    return write_png(path, (np.asarray(mask) > 0).astype(np.uint8) * 255)


def write_dicom_xa(
    path,
    frames: np.ndarray,
    pixel_spacing_mm: float,
    frame_time_ms: Optional[float] = None,
    patient_id: str = "SYNTHETIC",
    patient_name: str = "Synthetic^Angiogram",
    study_uid: Optional[str] = None,
    series_uid: Optional[str] = None,
    sop_uid: Optional[str] = None,
    series_description: str = "angiokit synthetic angiogram",
    instance_number: int = 1,
    positioner_angles_deg=(0.0, 0.0),
) -> str:
    """Frames ([H, W] or [T, H, W], uint8 or uint16) as a DICOM XA object."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = _as_frames(frames, path)
    _check_integer(frames, path)
    t, rows, cols = frames.shape
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XA_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(os.fspath(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    ds.SOPClassUID, ds.SOPInstanceUID = XA_IMAGE_STORAGE, sop_uid
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "", "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = date, time, date, time
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "XA", 1, int(instance_number)
    ds.SeriesDescription = series_description
    ds.Manufacturer = "angiokit"
    ds.ImageType = ["DERIVED", "PRIMARY", "SINGLE PLANE"]
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PixelIntensityRelationship = "LIN"
    ds.PatientOrientation = ""
    ds.KVP, ds.RadiationSetting, ds.PositionerMotion = "", "GR", "STATIC"
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = [float(a) for a in positioner_angles_deg]
    ds.ImagerPixelSpacing = [float(pixel_spacing_mm), float(pixel_spacing_mm)]

    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    bits = 8 if frames.dtype == np.uint8 else (12 if frames.max(initial=0) < 4096 else 16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = frames.dtype.itemsize * 8, bits, bits - 1, 0
    if t > 1:
        ds.NumberOfFrames = t
        ds.FrameIncrementPointer = FRAME_TIME_TAG
        ds.FrameTime = float(frame_time_ms if frame_time_ms is not None else 66.7)
        ds.CineRate = int(round(1000.0 / ds.FrameTime))
    ds.PixelData = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<")).tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, write_like_original=False)
    return os.fspath(path)


def nifti_affine(pixel_spacing_mm: float) -> np.ndarray:
    """Rows -> posterior (-y in RAS), columns -> patient left (-x in RAS), frames -> +z."""
    s = float(pixel_spacing_mm)
    return np.array([[0.0, -s, 0.0, 0.0], [-s, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def write_nifti(path, frames: np.ndarray, pixel_spacing_mm: float = 1.0, frame_time_ms: Optional[float] = None) -> str:
    """Frames ([H, W] or [T, H, W], any numeric dtype) as NIfTI-1; see the module doc."""
    import nibabel as nib

    frames = _as_frames(frames, path)
    data = frames[0] if frames.shape[0] == 1 else np.moveaxis(frames, 0, -1)[:, :, None, :]
    img = nib.Nifti1Image(np.ascontiguousarray(data), nifti_affine(pixel_spacing_mm))
    img.header.set_xyzt_units("mm", "msec")
    if data.ndim == 4:
        img.header.set_zooms((pixel_spacing_mm, pixel_spacing_mm, 1.0, float(frame_time_ms or 66.7)))
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return os.fspath(path)


def write_csv(path, rows) -> str:
    """Rows (dicts with the same keys) as a CSV with a header, atomically."""
    import csv

    if not rows:
        raise ValueError(f"{path}: no rows to write")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return os.fspath(path)
