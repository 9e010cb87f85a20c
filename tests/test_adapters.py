import json

import numpy as np
import pytest
from PIL import Image

from angiokit.data import AngioDataError, read_angiogram, to_uint, write_dicom_xa
from angiokit.data.adapters import load_split, prepare_arcade, prepare_dca1, prepare_dicom_frames, prepare_pairs, rasterize_annotations

from .conftest import shared_data


def _frame(seed, size=48):
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (size, size), dtype=np.uint8)


def _coco(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("1.png", "2.png"):
        Image.fromarray(_frame(len(name))).save(images / name)
    coco = {
        "images": [{"id": 1, "file_name": "1.png", "width": 48, "height": 48}, {"id": 2, "file_name": "2.png", "width": 48, "height": 48}],
        "categories": [{"id": 1, "name": "1"}, {"id": 5, "name": "5"}, {"id": 26, "name": "stenosis"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[4, 4, 20, 4, 20, 10, 4, 10]]},
            {"id": 2, "image_id": 1, "category_id": 26, "segmentation": [[30, 30, 40, 30, 40, 40, 30, 40]]},
            {"id": 3, "image_id": 2, "category_id": 5, "segmentation": [[10, 20, 30, 20, 30, 24, 10, 24]]},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    return images, tmp_path / "ann.json"


def test_arcade_coco_binary_and_multiclass(tmp_path):
    images, ann = _coco(tmp_path)
    out = tmp_path / "out"
    datalist = json.load(open(prepare_arcade(str(images), str(ann), str(out), categories=["stenosis"], split={"training": ["1"], "test": ["2"]}, progress=False)))
    assert [e["case"] for e in datalist["training"]] == ["1"] and [e["case"] for e in datalist["test"]] == ["2"]
    binary = read_angiogram(out / "labels" / "1.png").frames[0]
    classes = read_angiogram(out / "labels_multiclass" / "1.png").frames[0]
    assert binary[35, 35] == 255 and binary[7, 10] == 0  # only the stenosis polygon
    assert classes[7, 10] == 1 and classes[35, 35] == 26 and classes[0, 0] == 0
    assert (classes == 1).sum() == 17 * 7  # the rectangle 4..20 x 4..10, edges included
    assert not read_angiogram(out / "labels" / "2.png").frames.any()
    assert np.array_equal(read_angiogram(out / "images" / "1.png").frames[0], _frame(5).astype(np.float32))
    with pytest.raises(AngioDataError, match="unknown categories"):
        prepare_arcade(str(images), str(ann), str(out), categories=["lesion"], progress=False)


def test_arcade_masks_match_the_distributed_reference():
    root = shared_data("arcade_stenosis_test")
    coco = json.load(open(root / "annotations" / "test.json"))
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    ious = []
    for info in coco["images"][::10]:
        ours = rasterize_annotations(by_image.get(info["id"], []), info["height"], info["width"]) > 0
        ref = np.asarray(Image.open(root / "masks" / info["file_name"])) > 0
        ious.append((ours & ref).sum() / max((ours | ref).sum(), 1))
    assert min(ious) >= 0.998


def _pgm_pairs(folder, n=2):
    folder.mkdir()
    for i in range(1, n + 1):
        Image.fromarray(_frame(i)).save(folder / f"{i}.pgm")
        mask = np.zeros((48, 48), np.uint8)
        mask[10:14, 5:40] = 255
        Image.fromarray(mask).save(folder / f"{i}_gt.pgm")


def test_dca1_pairs(tmp_path):
    _pgm_pairs(tmp_path / "dca1")
    doc = json.load(open(prepare_dca1(str(tmp_path / "dca1"), str(tmp_path / "out"), progress=False)))
    entries = doc["training"] + doc["validation"] + doc["test"]
    assert sorted(e["case"] for e in entries) == ["1", "2"]
    label = read_angiogram(tmp_path / "out" / entries[0]["label"]).frames[0]
    assert set(np.unique(label)) == {0.0, 255.0} and label[11, 20] == 255


def test_pairs_errors_name_the_problem(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    Image.fromarray(_frame(1)).save(images / "a.png")
    Image.fromarray(_frame(2)).save(images / "b.png")
    Image.fromarray((np.arange(48 * 48).reshape(48, 48) % 3 * 100).astype(np.uint8)).save(masks / "a.png")
    with pytest.raises(AngioDataError, match=r"unmatched pairs.*\['b'\]"):
        prepare_pairs(str(images), str(masks), str(tmp_path / "out"), progress=False)
    (images / "b.png").unlink()
    with pytest.raises(AngioDataError, match="not binary") as err:
        prepare_pairs(str(images), str(masks), str(tmp_path / "out"), progress=False)
    assert str(masks / "a.png") in str(err.value)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(masks / "a.png")
    with pytest.raises(AngioDataError, match="image is"):
        prepare_pairs(str(images), str(masks), str(tmp_path / "out"), progress=False)
    with pytest.raises(AngioDataError, match="folder not found"):
        prepare_pairs(str(tmp_path / "nope"), None, str(tmp_path / "out"), progress=False)
    with pytest.raises(AngioDataError, match="in no split"):
        prepare_pairs(str(images), None, str(tmp_path / "out"), split={"training": ["zzz"]}, progress=False)


def test_unlabeled_frames_and_dicom_cines(tmp_path, small_cine):
    write_dicom_xa(tmp_path / "dcm" / "run1.dcm", to_uint(small_cine.image, 8), 0.3, 66.7)
    write_dicom_xa(tmp_path / "dcm" / "run2.dcm", to_uint(small_cine.image[:4], 8), 0.3, 66.7)
    doc = json.load(open(prepare_dicom_frames(str(tmp_path / "dcm"), str(tmp_path / "out"), progress=False)))
    entries = doc["training"] + doc["validation"] + doc["test"]
    assert len(entries) == small_cine.frames + 4 and "label" not in entries[0]
    for split in ("training", "validation", "test"):  # frames of a run share its split
        cases = {e["case"] for e in doc[split]}
        assert all(sum(e["case"] == c for e in entries) == sum(e["case"] == c for e in doc[split]) for c in cases)
    best = json.load(open(prepare_dicom_frames(str(tmp_path / "dcm" / "run1.dcm"), str(tmp_path / "best"), frames="max_contrast", progress=False)))
    assert len(best["training"] + best["validation"] + best["test"]) == 1


def test_real_xa_dicoms_become_frames(tmp_path):
    src = shared_data("dicom_xa", "phantom_vukicevic_IM8.dcm")
    doc = json.load(open(prepare_dicom_frames(str(src), str(tmp_path), progress=False)))
    entries = doc["training"] + doc["validation"] + doc["test"]
    assert len(entries) == 8 and read_angiogram(tmp_path / entries[0]["image"]).frames.shape == (1, 512, 512)


def test_packaged_splits_follow_the_provenance_files():
    xcad = load_split("xcad_samples")
    assert len(xcad["training"]) == 5 and "00242_44" in xcad["test"]
    arcade = load_split("arcade_stenosis")
    assert arcade["training"][:2] == ["1", "2"] and arcade["test"][-1] == "300" and len(arcade["test"]) == 100
    with pytest.raises(AngioDataError, match="packaged"):
        load_split("no_such_split")


def _split_doc(name):
    from importlib import resources

    return json.loads(resources.files("angiokit.data.splits").joinpath(f"{name}.json").read_text())


def test_superseded_arcade_stenosis_split_says_so():
    assert _split_doc("arcade_stenosis")["description"].startswith("SUPERSEDED by arcade_s.json")


def test_dca1_split_matches_the_provenance_and_the_files():
    root = shared_data("dca1")
    split = load_split("dca1")
    on_disk = {p.stem for p in (root / "images").glob("*.png")}
    assert len(split["training"]) == 40 and len(split["test"]) == 40 and "validation" not in split
    assert all(c.startswith("tr_") for c in split["training"]) and all(c.startswith("te_") for c in split["test"])
    assert set(split["training"]) | set(split["test"]) == on_disk
    for case in split["training"] + split["test"]:
        assert (root / "images" / f"{case}.png").is_file() and (root / "masks" / f"{case}.png").is_file(), case


def test_arcade_s_split_matches_the_two_folders():
    train_root, test_root = shared_data("arcade_stenosis_train"), shared_data("arcade_stenosis_test")
    split = load_split("arcade_s")
    assert len(split["training"]) == 1000 and len(split["test"]) == 300
    # both folders number their files from 1.png: the case ids carry the split as a prefix
    assert {c.removeprefix("train_") for c in split["training"]} == {p.stem for p in (train_root / "images").glob("*.png")}
    assert {c.removeprefix("test_") for c in split["test"]} == {p.stem for p in (test_root / "images").glob("*.png")}
    assert not set(split["training"]) & set(split["test"])
    duplicates = [c for group in _split_doc("arcade_s")["duplicates_in_training"] for c in group]
    assert len(duplicates) == 6 and set(duplicates) <= set(split["training"])


def test_validation_holdout_takes_only_training_and_keeps_duplicates_together():
    from angiokit.data.adapters import with_validation_holdout

    fixed = {"training": [f"t{i}" for i in range(50)], "test": ["x1", "x2"]}
    pinned = [["t0", "t1"], ["t2", "t3"]]
    held = with_validation_holdout(fixed, 0.3, 0, keep_in_training=pinned)
    assert held["test"] == ["x1", "x2"] and held["validation"]
    assert sorted(held["training"] + held["validation"]) == sorted(fixed["training"])
    assert {"t0", "t1", "t2", "t3"} <= set(held["training"])
    assert held == with_validation_holdout(fixed, 0.3, 0, keep_in_training=pinned)  # seeded: stable
    assert with_validation_holdout(fixed, 0.3, 1, keep_in_training=pinned)["validation"] != held["validation"]


def test_dca1_images_and_masks_layout_thresholds_stray_grey_values(tmp_path):
    root = tmp_path / "dca1"
    (root / "images").mkdir(parents=True), (root / "masks").mkdir()
    for i, case in enumerate(("tr_01", "tr_13", "te_01")):
        Image.fromarray(_frame(i)).save(root / "images" / f"{case}.png")
        mask = np.zeros((48, 48), np.uint8)
        mask[10:14, 5:40] = 255
        if case == "te_01":
            mask[30, 30], mask[31, 31] = 100, 200  # stray grey values, as in DCA1's te_23
        Image.fromarray(mask).save(root / "masks" / f"{case}.png")
    doc = json.load(open(prepare_dca1(str(root), str(tmp_path / "out"), progress=False)))
    # packaged dca1 split: te_* test; tr_13 is in the seed-0 validation hold-out of the 40 tr_*
    assert [e["case"] for e in doc["test"]] == ["te_01"] and [e["case"] for e in doc["validation"]] == ["tr_13"]
    assert "thresholded at > 127" in doc["description"] and "te_01" in doc["description"]
    label = np.asarray(Image.open(tmp_path / "out" / doc["test"][0]["label"]))
    assert set(np.unique(label)) == {0, 255} and label[30, 30] == 0 and label[31, 31] == 255


def test_prepare_real_dca1_fixed_split_binary_masks(tmp_path):
    root = shared_data("dca1")
    doc = json.load(open(prepare_dca1(str(root), str(tmp_path), progress=False)))
    training, validation, test = ([e["case"] for e in doc[s]] for s in ("training", "validation", "test"))
    assert len(training) + len(validation) == 40 and 0 < len(validation) < 10 and len(test) == 40
    assert sorted(training + validation) == sorted(load_split("dca1")["training"]) and sorted(test) == load_split("dca1")["test"]
    for entry in doc["training"] + doc["validation"] + doc["test"]:
        assert set(np.unique(np.asarray(Image.open(tmp_path / entry["label"])))) <= {0, 255}, entry["case"]
    te_23 = np.asarray(Image.open(tmp_path / "labels" / "te_23.png"))
    source = np.asarray(Image.open(root / "masks" / "te_23.png"))
    assert set(np.unique(source)) - {0, 255}  # the distributed mask does carry stray values
    assert np.array_equal(te_23 > 0, source > 127)
