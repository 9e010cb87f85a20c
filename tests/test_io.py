import os

import numpy as np
import pytest

from angiokit.data import AngioDataError, load_frame, max_contrast_frame, read_angiogram, to_uint, write_dicom_xa, write_mask_png, write_nifti, write_png
from angiokit.data.writers import atomic_path

from .conftest import shared_data


# ---- round trips: generate -> write -> read -> same pixels, mask still on the vessels ------


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip_keeps_pixels_and_mask_alignment(tmp_path, small_frames, bits):
    s = small_frames[0]
    pixels = to_uint(s.image[0], bits)
    write_png(tmp_path / "img.png", pixels)
    write_mask_png(tmp_path / "mask.png", s.vessel[0])
    img = read_angiogram(tmp_path / "img.png")
    mask = load_frame(tmp_path / "mask.png")
    assert img.frames.shape == (1, 128, 128) and img.frames.dtype == np.float32
    assert np.array_equal(img.frames[0], pixels.astype(np.float32))
    assert set(np.unique(mask)) == {0.0, 255.0}
    assert np.array_equal(mask[0] > 0, s.vessel[0].astype(bool))
    # the mask still lies on the dark vessels after the round trip
    assert img.frames[0][mask[0] > 0].mean() < img.frames[0][mask[0] == 0].mean()


def test_monai_loader_with_documented_options_matches_our_reader(tmp_path, small_frames):
    from monai.data import PILReader
    from monai.transforms import LoadImage

    pixels = to_uint(small_frames[1].image[0], 8)
    pixels[:5, :] = 0  # make rows distinguishable from columns
    write_png(tmp_path / "a.png", pixels)
    write_nifti(tmp_path / "a.nii.gz", pixels, 0.3)
    png = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True)(str(tmp_path / "a.png"))
    nii = LoadImage(reader="NibabelReader", image_only=True)(str(tmp_path / "a.nii.gz"))
    assert np.array_equal(np.asarray(png), pixels)
    assert np.array_equal(np.asarray(nii), pixels)


def test_colour_png_becomes_grey(tmp_path):
    from PIL import Image

    grey = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        frames = read_angiogram(tmp_path / name).frames
        assert frames.shape == (1, 32, 64) and np.array_equal(frames[0], grey.astype(np.float32))


@pytest.mark.parametrize("bits", [8, 12])
def test_dicom_xa_cine_round_trip_pydicom_itk_and_ours(tmp_path, small_cine, bits):
    import itk
    import pydicom

    pixels = to_uint(small_cine.image, bits)
    path = write_dicom_xa(tmp_path / "cine.dcm", pixels, small_cine.pixel_spacing_mm, small_cine.frame_time_ms)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "XA" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.12.1"
    assert int(ds.NumberOfFrames) == small_cine.frames and float(ds.FrameTime) == pytest.approx(small_cine.frame_time_ms)
    assert ds.Rows == 128 and ds.Columns == 128 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert int(ds.BitsStored) == bits
    assert [float(v) for v in ds.ImagerPixelSpacing] == pytest.approx([small_cine.pixel_spacing_mm] * 2)
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert str(ds.get(uid, ""))
    assert np.array_equal(ds.pixel_array, pixels)
    assert np.array_equal(itk.array_view_from_image(itk.imread(str(path))), pixels)
    ours = read_angiogram(path)
    assert np.array_equal(ours.frames, pixels.astype(np.float32))
    assert ours.meta["frame_time_ms"] == pytest.approx(small_cine.frame_time_ms)


def test_single_frame_dicom_has_no_multiframe_tags(tmp_path, small_frames):
    import pydicom

    pixels = to_uint(small_frames[2].image[0], 8)
    ds = pydicom.dcmread(write_dicom_xa(tmp_path / "one.dcm", pixels, 0.3))
    assert "NumberOfFrames" not in ds and ds.pixel_array.shape == (128, 128)
    assert np.array_equal(load_frame(tmp_path / "one.dcm")[0], pixels.astype(np.float32))


def test_nifti_cine_round_trip(tmp_path, small_cine):
    write_nifti(tmp_path / "cine.nii.gz", small_cine.vessel, small_cine.pixel_spacing_mm, small_cine.frame_time_ms)
    back = read_angiogram(tmp_path / "cine.nii.gz")
    assert back.frames.shape == small_cine.vessel.shape
    assert np.array_equal(back.frames, small_cine.vessel.astype(np.float32))
    assert back.meta["frame_time_ms"] == pytest.approx(small_cine.frame_time_ms, rel=1e-4)
    assert back.meta["pixel_spacing_mm"] == pytest.approx(small_cine.pixel_spacing_mm, rel=1e-5)


def test_itk_written_nifti_keeps_rows_and_label_stacks_read_as_frames(tmp_path, small_cine):
    """3D Slicer / ITK write a 2-D label columns-first and a cine's label as a 3-D volume: read
    back, rows stay rows and frames stay frames."""
    import itk

    frame = (small_cine.vessel[0, :, :100] > 0).astype(np.uint8)  # not square: a transpose would show
    itk.imwrite(itk.image_from_array(frame), str(tmp_path / "slicer_label.nii.gz"))
    assert np.array_equal(read_angiogram(tmp_path / "slicer_label.nii.gz").frames[0], frame)
    stack = (small_cine.vessel[:4, :, :100] > 0).astype(np.uint8)
    itk.imwrite(itk.image_from_array(stack), str(tmp_path / "cine_label.nii.gz"))
    with pytest.raises(AngioDataError, match="volume_as_frames"):
        read_angiogram(tmp_path / "cine_label.nii.gz")
    assert np.array_equal(read_angiogram(tmp_path / "cine_label.nii.gz", volume_as_frames=True).frames, stack)
    write_nifti(tmp_path / "ours.nii.gz", stack[0])  # our own files are not transposed
    assert np.array_equal(read_angiogram(tmp_path / "ours.nii.gz").frames[0], stack[0])


def test_a_folder_with_one_dicom_reads_as_that_file(tmp_path, small_cine):
    """MONAI Label caches a DICOMweb series as a folder of its files."""
    series = tmp_path / "series"
    write_dicom_xa(series / "1.2.3.dcm", to_uint(small_cine.image[:3], 8), 0.3, 66.7)
    assert read_angiogram(series).frames.shape == (3, 128, 128)
    write_dicom_xa(series / "1.2.4.dcm", to_uint(small_cine.image[:3], 8), 0.3, 66.7)
    with pytest.raises(AngioDataError, match="2 DICOM files"):
        read_angiogram(series)


def test_frame_selection(tmp_path, small_cine):
    path = write_nifti(tmp_path / "cine.nii.gz", to_uint(small_cine.image, 8), 0.3, 66.7)
    assert read_angiogram(path, frames=2).frames.shape == (1, 128, 128)
    assert np.array_equal(read_angiogram(path, frames=-1).frames[0], read_angiogram(path).frames[-1])
    best = read_angiogram(path, frames="max_contrast").meta["frame_index"]
    # ground truth: how dark the vessel territory is in each frame
    territory = small_cine.vessel.any(0)
    darkness = -small_cine.image[:, territory].mean(1)
    assert best in np.argsort(darkness)[-3:]
    assert best >= small_cine.frames // 2
    with pytest.raises(AngioDataError, match="frame 99"):
        read_angiogram(path, frames=99)


# ---- real XA DICOM (JPEG Lossless) and real PNG frames ------------------------------------


def test_real_jpeg_lossless_xa_cines_load():
    folder = shared_data("dicom_xa")
    expected = {"phantom_vukicevic_IM1.dcm": 14, "phantom_vukicevic_IM5.dcm": 16, "XA-MONO2-8-12x-catheter.dcm": 12}
    for name, frames in expected.items():
        a = read_angiogram(folder / name)
        assert a.frames.shape == (frames, 512, 512)
        assert a.meta["modality"] == "XA" and a.frames.std() > 5
    assert read_angiogram(folder / "phantom_vukicevic_IM5.dcm").meta["pixel_spacing_mm"] == pytest.approx(0.390625)


def test_max_contrast_frame_follows_real_wash_in():
    folder = shared_data("xa_cine_kragujevac", "images")
    frames = np.concatenate([load_frame(folder / f"sample2_proj0_f{i:02d}.png") for i in range(1, 38, 4)])
    assert max_contrast_frame(frames) >= len(frames) // 2  # contrast builds up over the run


# ---- bad input: one clear error naming the file ------------------------------------------


def _ct_dicom(path, with_pixels=True):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.Modality = meta.MediaStorageSOPClassUID, "CT"
    if with_pixels:
        ds.Rows = ds.Columns = 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(16)
    ds.save_as(str(path), write_like_original=False)
    return path


def test_bad_inputs_get_one_clear_error_naming_the_file(tmp_path, small_frames):
    import nibabel as nib
    import pydicom

    cases = {}
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty"
    (tmp_path / "corrupt.png").write_bytes(os.urandom(300))
    cases["corrupt.png"] = "not a readable image"
    (tmp_path / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(200))
    cases["corrupt.dcm"] = "DICOM"
    _ct_dicom(tmp_path / "ct.dcm")
    cases["ct.dcm"] = "modality is 'CT'"
    ds = pydicom.dcmread(write_dicom_xa(tmp_path / "nopix.dcm", to_uint(small_frames[0].image[0], 8), 0.3))
    del ds.PixelData
    ds.save_as(str(tmp_path / "nopix.dcm"))
    cases["nopix.dcm"] = "no pixel data"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), np.eye(4)), str(tmp_path / "volume.nii.gz"))
    cases["volume.nii.gz"] = "3-D volume"
    (tmp_path / "notes.txt").write_text("hello")
    cases["notes.txt"] = "unknown angiogram format"
    cases["missing.png"] = "not found"
    for name, problem in cases.items():
        with pytest.raises(AngioDataError) as err:
            read_angiogram(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and problem in str(err.value), str(err.value)


def test_writers_refuse_bad_arrays_and_never_clobber(tmp_path, small_frames):
    good = to_uint(small_frames[0].image[0], 8)
    target = write_png(tmp_path / "keep.png", good)
    before = open(target, "rb").read()
    with pytest.raises(AngioDataError, match="uint8 or uint16"):
        write_png(target, small_frames[0].image[0])  # float pixels
    with pytest.raises(AngioDataError, match="one frame"):
        write_png(target, np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half a file")
            raise RuntimeError("interrupted")
    assert open(target, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.png"]  # no temp files left behind


def test_a_data_error_crosses_process_boundaries_whole():
    import pickle

    from angiokit.data import AngioDataError

    error = pickle.loads(pickle.dumps(AngioDataError("/data/frame.png", "not a readable image")))
    assert isinstance(error, AngioDataError) and error.path == "/data/frame.png" and str(error) == "/data/frame.png: not a readable image"
