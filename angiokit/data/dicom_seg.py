"""DICOM Segmentation objects (BINARY) for masks of XA frames and cines.

Written with pydicom by hand: pydicom-seg and highdicom reference each source *instance* as one
slice of a volume; an XA cine is one multi-frame instance whose segmentation frames must point
at frame numbers of that instance (SourceImageSequence > ReferencedFrameNumber), and highdicom
needs pydicom 3 (MONAI Label pins pydicom 2). One SEG frame per source frame, one segment
("vessel" by default), same study as the source, new series.
"""

from __future__ import annotations

import datetime
import os
import numpy as np

from .errors import AngioDataError
from .writers import atomic_path

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PATIENT_STUDY_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def write_dicom_seg(path, mask: np.ndarray, source_path: str, segment_label: str = "vessel", algorithm: str = "angiokit vessel segmentation", series_description: str = "angiokit vessel segmentation") -> str:
    """mask [T, H, W] (or [H, W]) for the T frames of the DICOM at ``source_path``."""
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    mask = np.asarray(mask).astype(bool)
    if mask.ndim == 2:
        mask = mask[None]
    try:
        src = pydicom.dcmread(source_path, stop_before_pixels=True)
    except Exception as e:  # noqa: BLE001 - any read failure is a bad source
        raise AngioDataError(source_path, f"source DICOM unreadable for the SEG reference ({e})") from e
    frames = int(src.get("NumberOfFrames", 1) or 1)
    if mask.shape != (frames, int(src.Rows), int(src.Columns)):
        raise AngioDataError(source_path, f"mask shape {mask.shape} does not match the source ({frames}, {src.Rows}, {src.Columns})")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(os.fspath(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    for tag in PATIENT_STUDY_TAGS:
        setattr(ds, tag, src.get(tag, ""))
    now = datetime.datetime.now()
    ds.SOPClassUID, ds.SOPInstanceUID = SEGMENTATION_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "SEG", generate_uid(), 900, 1
    ds.SeriesDescription = series_description
    ds.FrameOfReferenceUID = src.get("FrameOfReferenceUID", generate_uid())
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber, ds.SoftwareVersions = "angiokit", "angiokit", "0", "0.1.0"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel, ds.ContentDescription, ds.ContentCreatorName = "VESSELS", algorithm, "angiokit"
    ds.SegmentationType = "BINARY"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = int(src.Rows), int(src.Columns), frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression = "00"

    segment = Dataset()
    segment.SegmentNumber, segment.SegmentLabel = 1, segment_label
    segment.SegmentAlgorithmType, segment.SegmentAlgorithmName = "AUTOMATIC", algorithm
    segment.SegmentedPropertyCategoryCodeSequence = Sequence([_code("85756007", "SCT", "Tissue")])
    segment.SegmentedPropertyTypeCodeSequence = Sequence([_code("59820001", "SCT", "Blood vessel")])
    ds.SegmentSequence = Sequence([segment])

    dim_org = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_org
    dims = []
    # dimensions: segment number (in SegmentIdentificationSequence), then the frame's temporal index
    for pointer, group in ((0x0062000B, 0x0062000A), (0x00209128, 0x00209111)):
        d = Dataset()
        d.DimensionOrganizationUID, d.DimensionIndexPointer, d.FunctionalGroupPointer = dim_org, pointer, group
        dims.append(d)
    ds.DimensionIndexSequence = Sequence(dims)

    shared = Dataset()
    spacing = src.get("ImagerPixelSpacing") or src.get("PixelSpacing")
    if spacing:
        measures = Dataset()
        measures.PixelSpacing, measures.SliceThickness = [float(v) for v in spacing], 1.0
        shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for t in range(frames):
        item = Dataset()
        content = Dataset()
        content.DimensionIndexValues = [1, t + 1]
        content.TemporalPositionIndex = t + 1
        item.FrameContentSequence = Sequence([content])
        source = Dataset()
        source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
        if frames > 1:
            source.ReferencedFrameNumber = t + 1
        source.PurposeOfReferenceCodeSequence = Sequence([_code("121322", "DCM", "Source image for image processing operation")])
        derivation = Dataset()
        derivation.DerivationCodeSequence = Sequence([_code("113076", "DCM", "Segmentation")])
        derivation.SourceImageSequence = Sequence([source])
        item.DerivationImageSequence = Sequence([derivation])
        ident = Dataset()
        ident.ReferencedSegmentNumber = 1
        item.SegmentIdentificationSequence = Sequence([ident])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)

    ref_instance = Dataset()
    ref_instance.ReferencedSOPClassUID, ref_instance.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = src.SeriesInstanceUID
    ref_series.ReferencedInstanceSequence = Sequence([ref_instance])
    ds.ReferencedSeriesSequence = Sequence([ref_series])

    ds.PixelData = np.packbits(mask.reshape(-1), bitorder="little").tobytes()
    with atomic_path(path) as tmp:
        ds.save_as(tmp, write_like_original=False)
    return os.fspath(path)


def read_dicom_seg(path: str) -> np.ndarray:
    """[T, H, W] bool mask of a BINARY SEG written by ``write_dicom_seg`` (one segment)."""
    import pydicom

    ds = pydicom.dcmread(path)
    if str(ds.get("SOPClassUID")) != SEGMENTATION_STORAGE:
        raise AngioDataError(path, "not a DICOM Segmentation object")
    frames = int(ds.NumberOfFrames)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")
    return bits[: frames * ds.Rows * ds.Columns].reshape(frames, ds.Rows, ds.Columns).astype(bool)


__all__ = ["write_dicom_seg", "read_dicom_seg"]
