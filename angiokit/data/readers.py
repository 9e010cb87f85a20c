"""Read angiograms (PNG/JPEG/BMP/PGM, DICOM XA, NIfTI) into the one array convention.

Every reader returns frames as float32 ``[T, H, W]``: T = 1 for a still image, rows are image
rows as stored in the file (no transposes), pixel values as stored (no rescaling), attenuating
structures dark (MONOCHROME1 DICOMs are inverted to MONOCHROME2). Use ``select_frames`` /
``load_frame`` to pick frames of a cine; add the channel axis with ``frames[None]`` or take one
frame as ``[1, H, W]``.

Why DICOM is read with pydicom rather than MONAI's ``PydicomReader``: that reader is built for
CT/MR series (slices -> a spatial axis, patient-space orientation); an XA cine's frames are
time, and the XA tags we need (ImagerPixelSpacing, FrameTime, positioner angles) are not in its
metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Union

import numpy as np
from scipy.ndimage import gaussian_filter

from .errors import AngioDataError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
XA_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA Image Storage",
}
FrameChoice = Union[str, int, None]


@dataclass
class Angiogram:
    frames: np.ndarray
    """[T, H, W] float32."""
    meta: Dict = field(default_factory=dict)
    """path, format, pixel_spacing_mm (or None), frame_time_ms (or None), dtype, ..."""


def is_dicom_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def detect_format(path: str) -> str:
    """"raster", "dicom" or "nifti", from the suffix (or the DICM preamble for bare names)."""
    lower = path.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(RASTER_SUFFIXES):
        return "raster"
    if lower.endswith(DICOM_SUFFIXES) or is_dicom_file(path):
        return "dicom"
    raise AngioDataError(
        path, f"unknown angiogram format; expected one of {RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES} or a DICOM file"
    )


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise AngioDataError(path, "file not found")
    if os.path.isdir(path):
        raise AngioDataError(path, "is a folder, expected an image file")
    if os.path.getsize(path) == 0:
        raise AngioDataError(path, "file is empty (0 bytes)")


def _to_grey(data: np.ndarray, path: str) -> np.ndarray:
    """[H, W] or [H, W, C] -> [H, W]; colour uses ITU-R BT.601 luma, alpha is dropped."""
    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        rgb = data[..., :3].astype(np.float32)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return data[..., 0]
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if data.ndim == 3 and data.shape[-1] == 2:  # grey + alpha
        return data[..., 0]
    raise AngioDataError(path, f"unexpected image shape {data.shape}; expected grey [H, W] or colour [H, W, 3|4]")


def read_raster(path: str) -> Angiogram:
    from monai.data import PILReader
    from PIL import Image, UnidentifiedImageError

    reader = PILReader(reverse_indexing=False)  # keep rows as rows (MONAI's default swaps them)
    try:
        img = reader.read(path)
        img.load()
        data, _ = reader.get_data(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise AngioDataError(path, f"not a readable image ({type(e).__name__}: {e})") from e
    data = _to_grey(np.asarray(data), path)
    meta = {"format": "raster", "dtype": str(data.dtype), "pixel_spacing_mm": None, "frame_time_ms": None}
    if isinstance(img, Image.Image):
        meta["mode"] = img.mode
    return Angiogram(data.astype(np.float32)[None], meta)


def read_nifti(path: str, volume_as_frames: bool = False) -> Angiogram:
    """NIfTI frame (H, W), cine (H, W, 1, T), or - with ``volume_as_frames`` - a 3-D (H, W, T)
    stack of frames (what ITK and 3D Slicer write for a cine's segmentation). Files whose first
    array axis runs along the world x axis (ITK / Slicer: columns first) are transposed, so rows
    stay rows whoever wrote the file."""
    import nibabel as nib

    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types for corrupt files
        raise AngioDataError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    zooms = img.header.get_zooms()
    if data.ndim >= 2:
        axis0 = np.abs(img.affine[:3, 0])
        if axis0[0] > axis0[1]:  # array axis 0 is world x: columns first
            data = np.swapaxes(data, 0, 1)
    if data.ndim == 2:
        frames = data[None]
    elif data.ndim == 3 and data.shape[2] == 1:
        frames = data[..., 0][None]
    elif data.ndim == 4 and data.shape[2] == 1:
        frames = np.moveaxis(data[:, :, 0, :], -1, 0)  # (H, W, 1, T) -> (T, H, W)
    elif data.ndim == 3 and volume_as_frames:
        frames = np.moveaxis(data, -1, 0)
    elif data.ndim == 3:
        raise AngioDataError(
            path, f"is a 3-D volume of shape {data.shape}; expected a 2-D frame (H, W) or a cine stored as (H, W, 1, T)"
            " (a 3-D stack of label frames reads with volume_as_frames=True)"
        )
    else:
        raise AngioDataError(path, f"unexpected NIfTI shape {data.shape}; expected (H, W) or (H, W, 1, T)")
    frame_time = float(zooms[3]) if data.ndim == 4 and len(zooms) > 3 and zooms[3] > 0 else None
    if frame_time is not None and img.header.get_xyzt_units()[1] == "sec":
        frame_time *= 1000.0
    meta = {"format": "nifti", "dtype": str(data.dtype), "pixel_spacing_mm": float(zooms[0]), "frame_time_ms": frame_time}
    return Angiogram(frames.astype(np.float32), meta)


def read_dicom(path: str, modalities=("XA",)) -> Angiogram:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as e:
        raise AngioDataError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    modality = str(ds.get("Modality", ""))
    sop = str(ds.get("SOPClassUID", ""))
    if modality not in modalities and sop not in XA_SOP_CLASSES:
        raise AngioDataError(path, f"DICOM modality is {modality or 'missing'!r} (SOP class {sop or 'missing'}); expected X-ray angiography ({'/'.join(modalities)})")
    if "PixelData" not in ds:
        raise AngioDataError(path, "DICOM has no pixel data (PixelData element missing)")
    try:
        data = ds.pixel_array
    except Exception as e:  # decoder plugins raise many types
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise AngioDataError(
            path, f"DICOM pixel data could not be decoded (transfer syntax {syntax}; JPEG needs pylibjpeg + pylibjpeg-libjpeg): {e}"
        ) from e
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 3:
        data = np.stack([_to_grey(f, path) for f in (data if frames_n > 1 else data[None])])
    elif frames_n == 1:
        data = data[None]
    if data.ndim != 3:
        raise AngioDataError(path, f"unexpected DICOM pixel array shape {data.shape}; expected (frames, rows, columns)")
    frames = data.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        frames = frames * slope + intercept
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        frames = float(2 ** int(ds.get("BitsStored", 8)) - 1) - frames
    spacing = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing")
    frame_time = ds.get("FrameTime")
    if frame_time is None and ds.get("CineRate"):
        frame_time = 1000.0 / float(ds.CineRate)
    meta = {
        "format": "dicom",
        "dtype": str(data.dtype),
        "pixel_spacing_mm": float(spacing[0]) if spacing else None,
        "frame_time_ms": float(frame_time) if frame_time is not None else None,
        "modality": modality,
        "sop_class_uid": sop,
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
        "positioner_angles_deg": (
            float(ds.get("PositionerPrimaryAngle", 0) or 0),
            float(ds.get("PositionerSecondaryAngle", 0) or 0),
        ),
    }
    return Angiogram(frames, meta)


def read_angiogram(path, frames: FrameChoice = "all", volume_as_frames: bool = False) -> Angiogram:
    """Read any supported angiogram file; ``frames`` is "all", an index, or "max_contrast".
    ``volume_as_frames`` reads a 3-D NIfTI as a stack of frames instead of refusing it. A folder
    holding one DICOM file (a DICOMweb series as MONAI Label caches it) reads as that file."""
    path = _single_dicom_in_folder(os.fspath(path))
    _check_file(path)
    kind = detect_format(path)
    if kind == "nifti":
        result = read_nifti(path, volume_as_frames)
    else:
        result = {"raster": read_raster, "dicom": read_dicom}[kind](path)
    result.meta["path"] = path
    if result.frames.shape[1] < 2 or result.frames.shape[2] < 2:
        raise AngioDataError(path, f"image is {result.frames.shape[1:]} pixels; expected a 2-D frame")
    result.meta["num_frames"] = int(result.frames.shape[0])
    if frames != "all":
        index = frame_index(result.frames, frames, path)
        result.frames = result.frames[index : index + 1]
        result.meta["frame_index"] = index
    return result


def _single_dicom_in_folder(path: str) -> str:
    if not os.path.isdir(path):
        return path
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)) and (f.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(os.path.join(path, f))))
    if len(files) == 1:
        return files[0]
    if not files:
        raise AngioDataError(path, "is a folder without DICOM files; expected an image file")
    raise AngioDataError(path, f"is a folder of {len(files)} DICOM files; an angiogram is one (multi-frame) XA file")


def load_frame(path, frame: FrameChoice = "max_contrast") -> np.ndarray:
    """One frame as ``[1, H, W]`` float32 (a still image is its own frame)."""
    return read_angiogram(path, frames=frame).frames


def frame_index(frames: np.ndarray, which: FrameChoice, path: str = None) -> int:
    """Resolve a frame choice against ``[T, H, W]`` frames."""
    t = frames.shape[0]
    if which is None or which == "max_contrast":
        return max_contrast_frame(frames)
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        index = int(which) + (t if which < 0 else 0)
        if not 0 <= index < t:
            raise AngioDataError(path, f"frame {which} requested but the file has {t} frame(s)")
        return index
    raise AngioDataError(path, f"frame choice {which!r} not understood; expected 'all', 'max_contrast' or an integer")


def vessel_contrast_score(frames: np.ndarray, sigma: float = None) -> np.ndarray:
    """Per-frame dark-ridge energy: how much darker than their surroundings the 2 % most
    ridge-like pixels are (grey levels). Contrast-filled vessels raise it; the static
    background, catheter and noise are about the same in every frame of a run."""
    frames = np.asarray(frames, dtype=np.float32)
    sigma = sigma or 6.0 * frames.shape[-1] / 512  # wider than a main vessel at any size
    darker = gaussian_filter(frames, sigma=(0, sigma, sigma), mode="nearest") - frames
    return np.percentile(darker.reshape(len(frames), -1), 98, axis=1)


def max_contrast_frame(frames: np.ndarray) -> int:
    """Index of the frame with the most vessel contrast (0 for a still image)."""
    if frames.shape[0] == 1:
        return 0
    return int(np.argmax(vessel_contrast_score(frames)))
