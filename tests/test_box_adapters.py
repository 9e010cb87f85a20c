"""Detection (box) adapters: COCO / VOC / CSV readers, the box checks and the detection datalist."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from angiokit.data import AngioDataError
from angiokit.data.adapters import (
    BOX_MODE,
    arcade_s_split,
    check_boxes,
    prepare_arcade_s,
    prepare_arcade_s_boxes,
    prepare_boxes,
    read_coco_boxes,
    read_csv_boxes,
    read_voc_boxes,
)
from angiokit.data.datalist import read_entries

from .conftest import shared_data

VOC = """<annotation><filename>{stem}.bmp</filename><size><width>{w}</width><height>{h}</height><depth>1</depth></size>{objects}</annotation>"""
OBJECT = "<object><name>{name}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"


def _image(path, size=(40, 48), rgb=False):
    """A (height, width) = size frame; grey-in-RGB when ``rgb``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(30, 220, size, dtype=np.uint8)
    Image.fromarray(np.stack([pixels] * 3, -1) if rgb else pixels).save(path)
    return pixels


def _voc(folder, stem, boxes, name="Stenosis", size=(48, 40)):
    os.makedirs(folder, exist_ok=True)
    objects = "".join(OBJECT.format(*b, name=name) for b in boxes)
    path = os.path.join(folder, f"{stem}.xml")
    with open(path, "w") as f:
        f.write(VOC.format(stem=stem, w=size[0], h=size[1], objects=objects))
    return path


def _write_csv(path, rows, header=("image", "x1", "y1", "x2", "y2", "label")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


# ---------------------------------------------------------------- synthetic, always run


def test_coco_categories_order_and_frames_without_boxes(tmp_path):
    _image(tmp_path / "images" / "1.png", rgb=True)
    _image(tmp_path / "images" / "2.png")
    coco = {
        "images": [{"id": 1, "file_name": "1.png", "width": 48, "height": 40}, {"id": 2, "file_name": "2.png", "width": 48, "height": 40}],
        "categories": [{"id": 3, "name": "lesion"}, {"id": 26, "name": "stenosis"}, {"id": 7, "name": "other"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 26, "bbox": [4.5, 5.0, 10.25, 8.0]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 10, 5, 5]},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [1, 1, 3, 3]},
        ],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(coco))
    items = read_coco_boxes(str(tmp_path / "images"), str(ann), ["stenosis", "lesion"], case_prefix="p_")
    assert [(it["case"], it["box"], it["label"]) for it in items] == [("p_1", [[4.5, 5.0, 14.75, 13.0], [20.0, 10.0, 25.0, 15.0]], [0, 1]), ("p_2", [], [])]
    assert (items[0]["width"], items[0]["height"]) == (48, 40)
    path = prepare_boxes(items, str(tmp_path / "out"), split={"training": ["p_1"], "test": ["p_2"]}, class_names=["stenosis", "lesion"], progress=False)
    doc = json.load(open(path))
    assert doc["labels"] == {"0": "stenosis", "1": "lesion"} and doc["box_mode"] == BOX_MODE
    assert doc["training"][0]["image"] == "images/p_1.png" and doc["training"][0]["label"] == [0, 1]
    assert doc["test"][0]["box"] == [] and doc["test"][0]["label"] == [] and doc["validation"] == []
    assert Image.open(tmp_path / "out" / "images" / "p_1.png").mode == "L"  # grey-in-RGB stored as one channel
    entries = read_entries(path, ["training", "test"], path_keys=("image",))
    assert entries[0]["label"] == [0, 1] and os.path.isfile(entries[0]["image"])
    with pytest.raises(AngioDataError, match=r"ann\.json.*unknown categories"):
        read_coco_boxes(str(tmp_path / "images"), str(ann), ["plaque"])
    with pytest.raises(AngioDataError, match=r"lesion.*stenosis|labels index"):  # reader's classes != datalist's
        prepare_boxes(items, str(tmp_path / "out2"), class_names=["stenosis"], progress=False)
    os.remove(tmp_path / "images" / "2.png")
    with pytest.raises(AngioDataError, match=r"2\.png: image listed in .*ann\.json not found"):
        read_coco_boxes(str(tmp_path / "images"), str(ann))


def test_csv_round_trip_and_frame_without_box(tmp_path):
    _image(tmp_path / "imgs" / "a.png")
    _image(tmp_path / "imgs" / "b.png")
    rows = [["imgs/a.png", 1, 2, 10.5, 12, "Stenosis"], ["imgs/b.png", "", "", "", "", ""], ["imgs/a.png", 20, 5, 30, 9.25, "stenosis"]]
    items = read_csv_boxes(_write_csv(tmp_path / "boxes.csv", rows))
    assert [(it["case"], it["box"], it["label"], it["classes"]) for it in items] == [
        ("a", [[1.0, 2.0, 10.5, 12.0], [20.0, 5.0, 30.0, 9.25]], [0, 0], ["stenosis"]),
        ("b", [], [], ["stenosis"]),
    ]
    # written back (absolute paths, another folder) -> the same items
    back = [[it["image"], *box, it["classes"][label]] for it in items for box, label in zip(it["box"], it["label"])] + [[items[1]["image"], "", "", "", "", ""]]
    os.makedirs(tmp_path / "elsewhere")
    assert read_csv_boxes(_write_csv(tmp_path / "elsewhere" / "again.csv", back)) == items
    # relative to --images_root instead of the CSV's folder
    rel = _write_csv(tmp_path / "elsewhere" / "rel.csv", [["a.png", 1, 2, 10.5, 12, "stenosis"], ["b.png", "", "", "", "", ""]])
    assert [it["image"] for it in read_csv_boxes(rel, images_root=str(tmp_path / "imgs"))] == [items[0]["image"], items[1]["image"]]
    doc = json.load(open(prepare_boxes(items, str(tmp_path / "out"), split={"training": ["a", "b"]}, progress=False)))
    assert [(e["case"], len(e["box"])) for e in doc["training"]] == [("a", 2), ("b", 0)]


def test_cli_csv_boxes_prints_counts(tmp_path, capsys):
    from apps.prepare import csv_boxes

    for name in "abcd":
        _image(tmp_path / f"{name}.png")
    path = _write_csv(tmp_path / "boxes.csv", [[f"{n}.png", 1, 1, 5, 5, "stenosis"] for n in "abcd"] + [["a.png", 6, 6, 9, 9, "stenosis"]])
    csv_boxes(path, str(tmp_path / "out"), seed=0)
    printed = capsys.readouterr().out
    assert "datalist.json" in printed and "frames" in printed and "boxes" in printed
    doc = json.load(open(tmp_path / "out" / "datalist.json"))
    assert sum(len(doc[k]) for k in ("training", "validation", "test")) == 4
    assert sum(len(e["box"]) for k in ("training", "validation", "test") for e in doc[k]) == 5


def test_check_boxes_tolerance_and_errors():
    assert check_boxes("a.xml", "f.png", [[-0.5, 0, 48.75, 40.5]], 48, 40) == [[0.0, 0.0, 48.0, 40.0]]  # within 1 px: clipped
    with pytest.raises(AngioDataError, match=r"^a\.xml: box \[10, 5, 60, 20\] of f\.png \(48x40 pixels\): reaches 12 pixels past"):
        check_boxes("a.xml", "f.png", [[10, 5, 60, 20]], 48, 40)
    with pytest.raises(AngioDataError, match=r"^a\.xml: box \[10, 5, 10, 20\] of f\.png.*x1 < x2"):
        check_boxes("a.xml", "f.png", [[10, 5, 10, 20]], 48, 40)
    with pytest.raises(AngioDataError, match=r"^a\.xml: .*x1 < x2 and y1 < y2"):
        check_boxes("a.xml", "f.png", [[10, 25, 20, 20]], 48, 40)
    with pytest.raises(AngioDataError, match=r"^a\.xml: .*'x' is not a number"):
        check_boxes("a.xml", "f.png", [[10, "x", 20, 20]], 48, 40)


def test_voc_bad_input_names_the_file(tmp_path):
    images, ann = tmp_path / "images", tmp_path / "ann"
    _image(images / "f1.png")
    good = _voc(ann, "f1", [(3, 4, 20, 30)])
    assert read_voc_boxes(str(ann), str(images))[0]["box"] == [[3.0, 4.0, 20.0, 30.0]]
    with pytest.raises(AngioDataError, match=r"f1\.xml: unknown class 'Stenosis'; the classes are \['lesion'\]"):
        read_voc_boxes(str(ann), str(images), class_names=["lesion"])
    _voc(ann, "f1", [(3, 4, 60, 30)])  # beyond the 48-px width
    with pytest.raises(AngioDataError, match=r"f1\.xml: box .* of .*f1\.png \(48x40 pixels\): reaches 12 pixels past"):
        read_voc_boxes(str(ann), str(images))
    _voc(ann, "f1", [(20, 4, 3, 30)])
    with pytest.raises(AngioDataError, match=r"f1\.xml: .*x1 < x2"):
        read_voc_boxes(str(ann), str(images))
    _voc(ann, "f1", [(3, 4, 20, 30)], size=(64, 64))
    with pytest.raises(AngioDataError, match=r"f1\.xml: <size> says 64x64 but its image .*f1\.png is 48x40"):
        read_voc_boxes(str(ann), str(images))
    _voc(ann, "f1", [(3, 4, 20, 30)])
    _voc(ann, "f2", [(3, 4, 20, 30)])  # no f2 image
    with pytest.raises(AngioDataError, match=r"f2\.xml: no image f2"):
        read_voc_boxes(str(ann), str(images))
    open(os.path.join(ann, "f2.xml"), "w").close()  # empty XML
    with pytest.raises(AngioDataError, match=r"f2\.xml: not a readable VOC XML"):
        read_voc_boxes(str(ann), str(images))
    with open(os.path.join(ann, "f2.xml"), "w") as f:
        f.write(OBJECT.format("a", 1, 2, 3, name="x").join(["<annotation><size/>", "</annotation>"]))
    _image(images / "f2.jpg")
    with pytest.raises(AngioDataError, match=r"f2\.xml: object 0 \(x\) <xmin>: 'a' is not a number"):
        read_voc_boxes(str(ann), str(images))
    os.remove(os.path.join(ann, "f2.xml"))
    assert good and len(read_voc_boxes(str(ann), str(images))) == 1


def test_csv_bad_input_names_the_file(tmp_path):
    _image(tmp_path / "a.png")
    wrong = _write_csv(tmp_path / "wrong.csv", [["a.png", 1, 1, 5, 5, "stenosis"]], header=("file", "xmin", "ymin", "xmax", "ymax", "class"))
    with pytest.raises(AngioDataError, match=r"wrong\.csv: header .* lacks .*expected image,x1,y1,x2,y2,label"):
        read_csv_boxes(wrong)
    missing = _write_csv(tmp_path / "missing.csv", [["nope.png", 1, 1, 5, 5, "stenosis"]])
    with pytest.raises(AngioDataError, match=r"nope\.png: image listed in .*missing\.csv not found"):
        read_csv_boxes(missing)
    unknown = _write_csv(tmp_path / "unknown.csv", [["a.png", 1, 1, 5, 5, "plaque"]])
    with pytest.raises(AngioDataError, match=r"unknown\.csv: unknown class 'plaque'"):
        read_csv_boxes(unknown, class_names=["stenosis"])
    outside = _write_csv(tmp_path / "outside.csv", [["a.png", -3, 1, 5, 5, "stenosis"]])
    with pytest.raises(AngioDataError, match=r"outside\.csv: box .*a\.png \(48x40 pixels\): reaches 3 pixels past"):
        read_csv_boxes(outside)
    text = _write_csv(tmp_path / "text.csv", [["a.png", 1, "one", 5, 5, "stenosis"]])
    with pytest.raises(AngioDataError, match=r"text\.csv: line 2 \(y1\): 'one' is not a number"):
        read_csv_boxes(text)


# ---------------------------------------------------------------- the real data sets


def test_arcade_stenosis_boxes_full_files():
    train, test = shared_data("arcade_stenosis_train"), shared_data("arcade_stenosis_test")
    items = read_coco_boxes(str(train / "images"), str(train / "annotations" / "train.json"), case_prefix="train_")
    assert len(items) == 1000 and sum(len(it["box"]) for it in items) == 1625
    assert sum(not it["box"] for it in items) == 3  # frames without a stenosis are kept
    assert {i for it in items for i in it["label"]} == {0}
    known = next(it for it in items if it["case"] == "train_676")
    assert known["box"] == [[278.0, 245.12, 320.75, 299.25]] and known["label"] == [0]
    mask = np.asarray(Image.open(train / "masks" / "676.png")) > 0
    x1, y1, x2, y2 = known["box"][0]
    assert mask[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].mean() > 0.1  # the box lies on the stenosis mask
    assert not mask[: int(y1)].any() and not mask[int(np.ceil(y2)) + 1 :].any()  # and the mask inside the box
    test_items = read_coco_boxes(str(test / "images"), str(test / "annotations" / "test.json"), case_prefix="test_")
    assert len(test_items) == 300 and sum(len(it["box"]) for it in test_items) == 386
    # every case of both files is in the ARCADE-S split, test = the 300
    split = arcade_s_split()
    where = {c: name for name, cases in split.items() if name in ("training", "validation", "test") for c in cases}
    assert {where[it["case"]] for it in test_items} == {"test"}
    assert {where[it["case"]] for it in items} == {"training", "validation"}


def _arcade_subset(root, src, ids, name):
    """A smaller ARCADE split folder (images/, masks/, annotations/<name>.json) of the files ``ids``."""
    coco = json.load(open(src / "annotations" / f"{name}.json"))
    keep = {i["id"] for i in coco["images"] if i["file_name"] in {f"{n}.png" for n in ids}}
    coco["images"] = [i for i in coco["images"] if i["id"] in keep]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    for sub in ("images", "masks", "annotations"):
        os.makedirs(root / sub)
    for n in ids:
        for sub in ("images", "masks"):
            os.symlink(src / sub / f"{n}.png", root / sub / f"{n}.png")
    (root / "annotations" / f"{name}.json").write_text(json.dumps(coco))
    return root


def test_arcade_s_boxes_split_agrees_with_segmentation(tmp_path):
    train, test = shared_data("arcade_stenosis_train"), shared_data("arcade_stenosis_test")
    split = arcade_s_split()
    validation = [int(c[len("train_") :]) for c in split["validation"][:6]]
    train_ids = sorted({*range(1, 13), 148, 799, 545, 864, 86, 916, *validation})  # duplicate groups + held-out cases
    sub_train = _arcade_subset(tmp_path / "train", train, train_ids, "train")
    sub_test = _arcade_subset(tmp_path / "test", test, [1, 2, 3, 50], "test")
    seg = json.load(open(prepare_arcade_s(str(sub_train), str(sub_test), str(tmp_path / "seg"), progress=False)))
    path = prepare_arcade_s_boxes(str(sub_train), str(sub_test), str(tmp_path / "det"), progress=False)
    det = json.load(open(path))
    cases = lambda doc: {e["case"]: name for name in ("training", "validation", "test") for e in doc[name]}  # noqa: E731
    assert cases(det) == cases(seg) and len(cases(det)) == len(train_ids) + 4
    assert sorted(cases(det).values()).count("validation") == 6
    assert {cases(det)[f"train_{n}"] for n in (148, 799, 545, 864, 86, 916)} == {"training"}
    assert det["labels"] == {"0": "stenosis"} and det["box_mode"] == BOX_MODE
    entry = next(e for e in det["training"] if e["case"] == "train_1")
    assert Image.open(tmp_path / "det" / entry["image"]).mode == "L"  # train/1.png is RGB grey-in-RGB
    assert sum(len(e["box"]) for e in det["test"]) == sum(len(it["box"]) for it in read_coco_boxes(str(sub_test / "images"), str(sub_test / "annotations" / "test.json")))
    entries = read_entries(path, ["training", "validation", "test"], path_keys=("image",))
    assert all(os.path.isfile(e["image"]) and len(e["box"]) == len(e["label"]) for e in entries)


def test_adsd_voc_boxes(tmp_path):
    root = shared_data("adsd_stenosis_samples")
    items = read_voc_boxes(str(root / "annotations_voc"), str(root / "images"))
    assert len(items) == 6 and sum(len(it["box"]) for it in items) == 7
    first = items[0]
    assert first["case"] == "14_002_5_0016" and first["image"].endswith("14_002_5_0016.png")
    assert first["box"] == [[179.0, 148.0, 206.0, 167.0]] and first["label"] == [0] and first["classes"] == ["stenosis"]
    assert read_voc_boxes(str(root / "annotations_voc"), str(root / "images"), class_names=["Stenosis"]) == items
    doc = json.load(open(prepare_boxes(items, str(tmp_path / "out"), progress=False)))
    assert doc["labels"] == {"0": "stenosis"}
    assert sum(len(doc[k]) for k in ("training", "validation", "test")) == 6
