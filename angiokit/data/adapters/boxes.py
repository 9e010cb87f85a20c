"""Detection (bounding-box) data: COCO ``bbox``, Pascal VOC XML and a plain CSV -> frames + a
detection datalist for the stenosis detection bundle.

Prepared layout of OUT::

    images/<case>.png   grey PNG (``copy_frame``: RGB grey-in-RGB frames become one channel)
    datalist.json       {"description", "labels": {"0": "stenosis", ...}, "box_mode",
                         "training" / "validation" / "test": [{"image", "box", "label", ...}]}

``box`` is a list of ``[x1, y1, x2, y2]`` floats in pixels of the stored image: x = column,
y = row, origin at the top-left corner of the top-left pixel (COCO order; a COCO ``[x, y, w, h]``
becomes ``[x, y, x + w, y + h]``). ``label`` is the 0-based index of each box's class name in
``labels``. A frame without boxes keeps ``"box": [], "label": []``.

Readers return items ``{"case", "image" (source path), "box", "label", "width", "height",
"classes"}``; ``classes`` is the class-name list the ``label`` indices refer to, and
``prepare_boxes`` refuses items whose ``classes`` differ from its ``class_names``.

Measured on ../shared/data: ARCADE stenosis train 1,000 images / 1,625 "stenosis" boxes (997
images with at least one), test 300 images / 386 boxes; every COCO bbox equals its polygon's
extent and lies inside the 512 x 512 image (closest to a border: 2.35 px, train). ADSD samples:
6 frames / 7 boxes, all inside their 512 x 512 frames.
"""

from __future__ import annotations

import csv
import math
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

from PIL import Image
from tqdm import tqdm

from ..datalist import build_datalist, write_datalist
from ..detection import BOX_MODE
from ..errors import AngioDataError
from ..readers import read_angiogram
from .arcade import _split_root, load_coco
from .common import SplitSpec, case_splits, copy_frame, split_groups, with_validation_holdout

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".dcm")
CSV_COLUMNS = ("image", "x1", "y1", "x2", "y2", "label")


def _image_size(path: str, listed_in: Optional[str] = None) -> tuple:
    """(width, height) of an image file: the PIL header where PIL reads it, else the angiogram
    reader (DICOM). A missing or unreadable image is an ``AngioDataError`` naming it."""
    if not os.path.isfile(path):
        raise AngioDataError(path, f"image listed in {listed_in} not found" if listed_in else "image not found")
    if not path.lower().endswith(".dcm"):
        try:
            with Image.open(path) as im:
                return int(im.size[0]), int(im.size[1])
        except Exception:  # not a PIL image: try the angiogram reader below
            pass
    try:
        frames = read_angiogram(path, frames=0).frames
    except AngioDataError:
        raise
    except Exception as e:
        raise AngioDataError(path, f"cannot read the image ({type(e).__name__}: {e})") from e
    return int(frames.shape[2]), int(frames.shape[1])


def _number(value, source: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AngioDataError(source, f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise AngioDataError(source, f"{what}: {value!r} is not a finite number")
    return number


def check_boxes(source: str, image: str, boxes: Iterable[Sequence[float]], width: int, height: int, tolerance: float = 1.0) -> List[List[float]]:
    """Check boxes against their image and return them as ``[[x1, y1, x2, y2], ...]`` floats.

    Args:
        source: the annotation file the boxes come from (named in errors).
        image: the image they belong to (named in errors).
        boxes: ``[x1, y1, x2, y2]`` in pixels (x = column, y = row, origin at the top-left corner).
        width, height: the image's size in pixels.
        tolerance: how far (pixels) a box may reach past the border; such boxes are clipped
            to ``[0, width] x [0, height]``.

    Each box needs four finite numbers with x1 < x2 and y1 < y2 (also after clipping) and must lie
    inside the image up to ``tolerance``; otherwise ``AngioDataError`` naming ``source``, the image,
    the box and the image size. Measured on ../shared/data: no ARCADE stenosis box (1,625 train,
    386 test) and no ADSD box (7) reaches past the border, so the tolerance only matters for
    other data (annotation tools that round outward by a pixel).
    """
    checked = []
    for box in boxes:
        where = f"box {list(box)} of {image} ({width}x{height} pixels)"
        if len(box) != 4:
            raise AngioDataError(source, f"{where}: a box is [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (_number(v, source, where) for v in box)
        if not (x1 < x2 and y1 < y2):
            raise AngioDataError(source, f"{where}: needs x1 < x2 and y1 < y2")
        past = max(-x1, -y1, x2 - width, y2 - height)
        if past > tolerance:
            raise AngioDataError(source, f"{where}: reaches {past:g} pixels past the image border (tolerance {tolerance:g})")
        x1, x2 = max(0.0, x1), min(float(width), x2)
        y1, y2 = max(0.0, y1), min(float(height), y2)
        if not (x1 < x2 and y1 < y2):
            raise AngioDataError(source, f"{where}: empty once clipped to the image")
        checked.append([round(v, 6) for v in (x1, y1, x2, y2)])
    return checked


def _classes(class_names: Optional[Sequence[str]], found: Iterable[str]) -> List[str]:
    """The given class names (a string: one name), else the sorted set found; lower-cased."""
    if class_names is None:
        return sorted({str(n).strip().lower() for n in found})
    return [str(c).strip().lower() for c in ([class_names] if isinstance(class_names, str) else class_names)]


def _class_index(name: str, class_names: Sequence[str], source: str) -> int:
    lowered = [c.lower() for c in class_names]
    key = str(name).strip().lower()
    if key not in lowered:
        raise AngioDataError(source, f"unknown class {name!r}; the classes are {list(class_names)}")
    return lowered.index(key)


def _item(case: str, image: str, boxes: list, labels: list, width: int, height: int, classes: Sequence[str]) -> dict:
    return {"case": case, "image": os.path.abspath(image), "box": boxes, "label": [int(i) for i in labels], "width": width, "height": height, "classes": list(classes)}


def read_coco_boxes(images_dir: str, annotation_json: str, categories: Sequence[str] = ("stenosis",), case_prefix: str = "") -> List[dict]:
    """COCO ``bbox`` annotations -> box items, one per image of the file (those without boxes too).

    Args:
        images_dir: folder the COCO ``file_name`` values are relative to.
        annotation_json: the COCO file.
        categories: category names to keep; a box's ``label`` is its name's index in this order.
            Annotations of other categories are ignored; a name the file lacks is an error.
        case_prefix: prepended to each file stem to make the case id (``train_`` / ``test_`` keep
            two ARCADE splits that both number their files from 1 apart).

    Returns items ``{"case", "image", "box", "label", "width", "height", "classes"}``. The image's
    own size is the authority: a COCO width/height that disagrees with it, a missing image, or a
    box outside it (``check_boxes``) is an ``AngioDataError``. An annotation without ``bbox`` takes
    its polygon's extent.
    """
    categories = [categories] if isinstance(categories, str) else [str(c) for c in categories]
    coco = load_coco(annotation_json)
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    unknown = [c for c in categories if c not in names.values()]
    if unknown:
        raise AngioDataError(annotation_json, f"unknown categories {unknown}; the file has {sorted(set(names.values()))}")
    index_of = {i: categories.index(n) for i, n in names.items() if n in categories}
    by_image: Dict[object, list] = defaultdict(list)
    for ann in coco["annotations"]:
        if ann.get("category_id") in index_of:
            by_image[ann.get("image_id")].append(ann)
    items = []
    for info in coco["images"]:
        src = os.path.join(images_dir, info["file_name"])
        width, height = _image_size(src, annotation_json)
        listed = (info.get("width"), info.get("height"))
        if listed != (None, None) and listed != (width, height):
            raise AngioDataError(annotation_json, f"image {info['file_name']} is listed as {info.get('width')}x{info.get('height')} but {src} is {width}x{height}")
        raw, labels = [], []
        for ann in by_image.get(info["id"], []):
            raw.append(_coco_xyxy(ann, annotation_json))
            labels.append(index_of[ann["category_id"]])
        boxes = check_boxes(annotation_json, src, raw, width, height)
        items.append(_item(case_prefix + os.path.splitext(os.path.basename(info["file_name"]))[0], src, boxes, labels, width, height, categories))
    return items


def _coco_xyxy(ann: dict, annotation_json: str) -> list:
    what = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
    bbox = ann.get("bbox")
    if bbox is None:
        points = [p for poly in (ann.get("segmentation") or []) if isinstance(poly, list) for p in zip(poly[0::2], poly[1::2])]
        if not points:
            raise AngioDataError(annotation_json, f"{what} has neither a bbox nor a polygon")
        xs, ys = [_number(p[0], annotation_json, what) for p in points], [_number(p[1], annotation_json, what) for p in points]
        return [min(xs), min(ys), max(xs), max(ys)]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise AngioDataError(annotation_json, f"{what}: bbox {bbox!r} is not [x, y, w, h]")
    x, y, w, h = (_number(v, annotation_json, f"{what} bbox") for v in bbox)
    return [x, y, x + w, y + h]


def _find_image(images_dir: str, stem: str, listing: Dict[str, List[str]], source: str) -> str:
    found = listing.get(stem, [])
    if not found:
        raise AngioDataError(source, f"no image {stem}{{{','.join(IMAGE_EXTENSIONS)}}} in {images_dir}")
    found.sort(key=lambda f: IMAGE_EXTENSIONS.index(os.path.splitext(f)[1].lower()))
    return os.path.join(images_dir, found[0])


def read_voc_boxes(annotations_dir: str, images_dir: str, class_names: Optional[Sequence[str]] = None) -> List[dict]:
    """Pascal VOC XML files (one per image) -> box items, one per ``*.xml`` of ``annotations_dir``.

    Args:
        annotations_dir: folder of VOC ``.xml`` files.
        images_dir: folder of the images. An XML's image is found by the XML's file stem with any
            of .png, .jpg, .jpeg, .bmp, .dcm (first of these where several exist); the XML's own
            ``<filename>`` is not used (ADSD's say .bmp for frames stored as .png).
            Images without an XML are not read.
        class_names: the classes, matched case-insensitively ("Stenosis" == "stenosis"); a box's
            ``label`` is its name's index here and a name not listed is an error. None: the
            sorted set of the names found. Items carry the names lower-cased.

    Coordinates are taken as written (``xmin``, ``ymin``, ``xmax``, ``ymax`` -> x1, y1, x2, y2):
    LabelImg, which made the ADSD files, writes pixel-corner coordinates. The image's own size is
    the authority: an XML ``<size>`` that disagrees with it is an error (a 0 or absent size is
    ignored). Errors (``AngioDataError`` naming the file): no XML files, an empty or unparsable
    XML, a missing or unreadable image, a non-numeric coordinate, an unknown class, a box outside
    the image (``check_boxes``).
    """
    if not os.path.isdir(annotations_dir):
        raise AngioDataError(annotations_dir, "folder of VOC .xml annotations not found")
    if not os.path.isdir(images_dir):
        raise AngioDataError(images_dir, "images folder not found")
    xmls = sorted(f for f in os.listdir(annotations_dir) if f.lower().endswith(".xml"))
    if not xmls:
        raise AngioDataError(annotations_dir, "no .xml annotation files here")
    listing: Dict[str, List[str]] = defaultdict(list)
    for f in os.listdir(images_dir):
        stem, ext = os.path.splitext(f)
        if ext.lower() in IMAGE_EXTENSIONS:
            listing[stem].append(f)
    parsed = []
    for name in xmls:
        path = os.path.join(annotations_dir, name)
        objects, size = _parse_voc(path)
        parsed.append((path, os.path.splitext(name)[0], objects, size))
    classes = _classes(class_names, (o[0] for _, _, objs, _ in parsed for o in objs))
    items = []
    for path, stem, objects, size in parsed:
        image = _find_image(images_dir, stem, listing, path)
        width, height = _image_size(image, path)
        if size is not None and size != (width, height):
            raise AngioDataError(path, f"<size> says {size[0]}x{size[1]} but its image {image} is {width}x{height}")
        labels = [_class_index(o[0], classes, path) for o in objects]
        boxes = check_boxes(path, image, [o[1] for o in objects], width, height)
        items.append(_item(stem, image, boxes, labels, width, height, classes))
    return items


def _parse_voc(path: str) -> tuple:
    """[(name, [xmin, ymin, xmax, ymax]), ...] and (width, height) or None, of one VOC XML."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as e:
        raise AngioDataError(path, f"not a readable VOC XML ({type(e).__name__}: {e})") from e
    if root.tag != "annotation":
        raise AngioDataError(path, f"not a VOC XML: the root element is <{root.tag}>, expected <annotation>")
    size = None
    node = root.find("size")
    if node is not None and node.findtext("width") and node.findtext("height"):
        w, h = _number(node.findtext("width"), path, "<size> width"), _number(node.findtext("height"), path, "<size> height")
        size = (int(w), int(h)) if w > 0 and h > 0 else None
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AngioDataError(path, f"object {k} has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AngioDataError(path, f"object {k} ({name}) has no <bndbox>")
        objects.append((name, [_number(bndbox.findtext(t), path, f"object {k} ({name}) <{t}>") for t in ("xmin", "ymin", "xmax", "ymax")]))
    return objects, size


def read_csv_boxes(csv_path: str, images_root: Optional[str] = None, class_names: Optional[Sequence[str]] = None) -> List[dict]:
    """A CSV of boxes -> box items, one per distinct image, in order of first appearance.

    Args:
        csv_path: a CSV with the header ``image,x1,y1,x2,y2,label`` (extra columns ignored);
            one row per box, several rows per image allowed; a row whose x1..label are all
            empty is an image with no box. Coordinates as in the datalist (pixels, x = column,
            origin at the top-left corner); ``label`` a class name.
        images_root: folder relative image paths are resolved against (default: the CSV's).
        class_names: the classes, matched case-insensitively; None: the sorted set of the
            names found, lower-cased.

    The case id is the image's file stem (two images with the same stem are an error).
    Errors (``AngioDataError`` naming the CSV): a missing file or header, a non-numeric
    coordinate, an unknown class, a missing image, a box outside its image.
    """
    if not os.path.isfile(csv_path):
        raise AngioDataError(csv_path, "box CSV not found")
    root = images_root if images_root is not None else os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AngioDataError(csv_path, f"not a readable CSV ({type(e).__name__}: {e})") from e
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not set(CSV_COLUMNS) <= set(header):
        raise AngioDataError(csv_path, f"header {rows[0] if rows else '(empty file)'} lacks {[c for c in CSV_COLUMNS if c not in header]}; expected {','.join(CSV_COLUMNS)}")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    per_image: Dict[str, list] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in row):
            continue
        row = row + [""] * (len(header) - len(row))
        image = row[col["image"]].strip()
        if not image:
            raise AngioDataError(csv_path, f"line {line}: no image")
        path = image if os.path.isabs(image) else os.path.join(root, image)
        boxes = per_image.setdefault(path, [])
        fields = [row[col[c]].strip() for c in CSV_COLUMNS[1:]]
        if not any(fields):
            continue
        coords = [_number(v, csv_path, f"line {line} ({c})") for v, c in zip(fields[:4], CSV_COLUMNS[1:5])]
        if not fields[4]:
            raise AngioDataError(csv_path, f"line {line}: a box without a label")
        boxes.append((fields[4], coords))
    if not per_image:
        raise AngioDataError(csv_path, "no rows below the header")
    classes = _classes(class_names, (name for rows_ in per_image.values() for name, _ in rows_))
    items, seen = [], {}
    for path, rows_ in per_image.items():
        case = os.path.splitext(os.path.basename(path))[0]
        if case in seen:
            raise AngioDataError(csv_path, f"images {seen[case]} and {path} have the same file stem {case!r} (the case id)")
        seen[case] = path
        width, height = _image_size(path, csv_path)
        labels = [_class_index(name, classes, csv_path) for name, _ in rows_]
        boxes = check_boxes(csv_path, path, [c for _, c in rows_], width, height)
        items.append(_item(case, path, boxes, labels, width, height, classes))
    return items


def prepare_boxes(
    items: List[dict],
    out: str,
    split: SplitSpec = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    description: str = "",
    class_names: Sequence[str] = ("stenosis",),
    progress: bool = True,
) -> str:
    """Copy the items' frames to ``out/images/<case>.png`` and write ``out/datalist.json``.

    Args:
        items: box items (from the ``read_*_boxes`` readers, or dicts with "case", "image",
            "box", "label").
        out: output folder.
        split: a packaged split name, a JSON split file, a dict of case lists, or None (stable
            hash split by case with ``val_fraction`` / ``test_fraction`` / ``seed``).
        description: the datalist's description (default: a count of frames and boxes).
        class_names: the class names; ``labels`` maps index -> name. Items carrying "classes"
            must carry exactly these (a reader's inferred classes are not silently renamed).
        progress: a tqdm bar over the frames.

    Returns the path of datalist.json. Entries hold "case", "image" (relative to ``out``),
    "source" (the original image), "box" and "label"; frames without boxes are kept.
    """
    class_names = [class_names] if isinstance(class_names, str) else [str(c) for c in class_names]
    seen: Dict[str, str] = {}
    for it in items:
        if it["case"] in seen:
            raise AngioDataError(it["image"], f"case {it['case']!r} is also {seen[it['case']]}; case ids must be unique")
        seen[it["case"]] = it["image"]
        if "classes" in it and [c.lower() for c in it["classes"]] != [c.lower() for c in class_names]:
            raise AngioDataError(it["image"], f"its labels index the classes {list(it['classes'])} but the datalist is for {class_names}")
        if len(it["box"]) != len(it["label"]) or any(not 0 <= int(i) < len(class_names) for i in it["label"]):
            raise AngioDataError(it["image"], f"labels {list(it['label'])} do not match {len(it['box'])} box(es) of classes 0..{len(class_names) - 1}")
    entries = []
    for it in tqdm(items, desc="box frames", disable=not progress):
        dst = os.path.join(out, "images", f"{it['case']}.png")
        pixels = copy_frame(it["image"], dst)
        if "width" in it and pixels.shape != (it["height"], it["width"]):
            raise AngioDataError(it["image"], f"the stored frame is {pixels.shape[1]}x{pixels.shape[0]} but its boxes are for {it['width']}x{it['height']}")
        boxes = [[float(v) for v in b] for b in it["box"]]
        entries.append({"case": it["case"], "image": dst, "source": os.path.abspath(it["image"]), "box": boxes, "label": [int(i) for i in it["label"]]})
    splits = case_splits([e["case"] for e in entries], split, val_fraction, test_fraction, seed)
    lists = build_datalist(entries, out, path_keys=("image",), splits=splits)
    if not description:
        description = f"detection boxes: {len(entries)} frames, {sum(len(e['box']) for e in entries)} boxes of {class_names}"
    labels = {str(i): name for i, name in enumerate(class_names)}
    return write_datalist(os.path.join(out, "datalist.json"), lists, description=description, labels=labels, box_mode=BOX_MODE)


def arcade_s_split(split: SplitSpec = "arcade_s", val_fraction: float = 0.1, seed: int = 0) -> Dict[str, List[str]]:
    """The ARCADE-S case lists exactly as ``prepare_arcade_s`` uses them: the fixed split with a
    seeded ``val_fraction`` validation hold-out of training, its duplicate groups kept in training."""
    return with_validation_holdout(split, val_fraction, seed, keep_in_training=split_groups(split))


def prepare_arcade_s_boxes(train_root: str, test_root: str, out: str, split: SplitSpec = "arcade_s", val_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> str:
    """ARCADE-S with stenosis boxes: the protocol of ``prepare_arcade_s``, boxes instead of masks.

    Args:
        train_root, test_root: the ARCADE stenosis train (1,000) and test (300) folders, each
            with images/ and annotations/<split>.json.
        out: output folder (images/ and datalist.json).
        split: the fixed split (default the packaged ``arcade_s``).
        val_fraction, seed: the validation hold-out of training, as in ``prepare_arcade_s``.
        progress: tqdm bar over the frames.

    Case ids ``train_<N>`` / ``test_<N>``; test = the 300; validation = the same seeded hold-out
    (byte-identical images kept in training), so every case lands in the same split as in the
    segmentation datalist. Boxes = the COCO bbox of every "stenosis" annotation (1,625 train, 386
    test; 3 train frames have none and are kept). Returns the datalist path.
    """
    train_images, train_json = _split_root(train_root)
    test_images, test_json = _split_root(test_root)
    items = read_coco_boxes(train_images, train_json, ["stenosis"], "train_") + read_coco_boxes(test_images, test_json, ["stenosis"], "test_")
    fixed = arcade_s_split(split, val_fraction, seed)
    description = (f"ARCADE-S stenosis boxes: training/validation from {train_json} (seed-{seed} {val_fraction:g} validation hold-out), "
                   f"test from {test_json}; boxes = COCO bbox of the 'stenosis' annotations")
    return prepare_boxes(items, out, fixed, val_fraction, 0.0, seed, description, ["stenosis"], progress)


__all__ = ["BOX_MODE", "arcade_s_split", "check_boxes", "prepare_arcade_s_boxes", "prepare_boxes", "read_coco_boxes", "read_csv_boxes", "read_voc_boxes"]
