"""Datastores that keep what annotators already gave.

Uploads are checked before anything is replaced: an image must be a readable angiogram; a
segmentation label must be readable and have its image's frames, rows and columns; a quality
rating (label tag ``quality``) must be the JSON of ``angiokit.data.quality.read_rating``. A
refused upload is an HTTP 422 naming the problem and every earlier label stays as it was; an
unknown image id is an HTTP 404; replacing an image that has labels by a different one is an
HTTP 409. Auxiliary images of synthetic angiograms (``*_aux_*``, found by the naming rule) are
not studies of their own. A study file the readers cannot read (a truncated DICOM, a text file
named .png) stays in the list with ``"readable": false`` and the reason (``"unreadable"``) in
its info, is not offered for annotation, and inference on it answers 422 (``lib/serving.py``).

Nothing is written outside the studies folder: an uploaded image's id and a label's tag must be
plain names (letters, digits, ``.``, ``_``, ``-``; no ``..``, no separators, no NUL), and every
destination must resolve (links followed) inside the folder, else HTTP 400. Images, labels and
the datastore file are written to a temporary file in the destination's folder, flushed to disk,
then renamed over the destination: a crash mid-copy leaves the previous file as it was. They get
the permissions a plain ``open`` gives (0o666 less the process umask, e.g. 0644), not the 0600
of the temporary file, so that the other accounts of a lab can read them.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from typing import IO, Any, Dict, Iterator, List, Optional

from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.datastore import Datastore

from angiokit.data import AngioDataError, read_angiogram
from angiokit.data.quality import read_rating
from angiokit.data.quality_dataset import is_auxiliary
from angiokit.data.writers import FILE_MODE

logger = logging.getLogger(__name__)

QUALITY_TAG = "quality"
EXTENSIONS = ("*.png", "*.jpg", "*.jpeg", "*.dcm", "*.nii.gz", "*.nii")


def unrated_images(datastore: Datastore) -> List[str]:
    """Readable studies without a quality rating."""
    return [i for i in datastore.list_images() if datastore.get_image_info(i).get("readable", True) and not datastore.get_label_by_image_id(i, QUALITY_TAG)]


def check_label(image_uri: str, label_file: str, label_tag: str, label_info: Dict[str, Any]) -> Dict[str, Any]:
    """The label info to store (a rating's scores added), or ValueError / AngioDataError."""
    if label_tag == QUALITY_TAG:
        return {**(label_info or {}), "rating": read_rating(label_file)}
    image = read_angiogram(image_uri, volume_as_frames=True).frames
    label = read_angiogram(label_file, volume_as_frames=True).frames
    if label.shape != image.shape:
        raise ValueError(f"label is {tuple(label.shape)} (frames, rows, columns) but the image is {tuple(image.shape)}")
    if label.min() < 0:
        raise ValueError("label has negative values; expected class indices")
    return label_info


_study_problems: Dict[tuple, Optional[str]] = {}
_study_problems_lock = threading.Lock()


def study_problem(path: str) -> Optional[str]:
    """Why the angiogram at ``path`` cannot be read (``AngioDataError``'s problem), or None.
    Remembered per file version (size, modification time): a study is read once to check it."""
    try:
        stat = os.stat(path)
    except OSError as e:
        return f"cannot be opened ({e.strerror})"
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _study_problems_lock:
        if key in _study_problems:
            return _study_problems[key]
    try:
        read_angiogram(path, volume_as_frames=True)
        problem = None
    except AngioDataError as e:
        problem = e.problem
    with _study_problems_lock:
        _study_problems[key] = problem
    return problem


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain file name part (an uploaded image's id, a label tag), else an
    HTTP 400 saying what is allowed: ids and tags become file and folder names."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value:
        raise HTTPException(status_code=400, detail=f"{what} {value!r} refused: expected 1 to 200 letters, digits, '.', '_' or '-' (no '..', no path)")
    return value


def inside(folder: str, path: str, what: str) -> str:
    """``path`` resolved (links followed) if it lies inside ``folder``, else an HTTP 400."""
    root, resolved = os.path.realpath(folder), os.path.realpath(path)
    if os.path.commonpath([root, resolved]) != root:
        raise HTTPException(status_code=400, detail=f"{what} refused: it would be written outside the studies folder")
    return resolved


@contextlib.contextmanager
def atomic_file(dest: str, prefix: str, mode: str = "wb") -> Iterator[IO]:
    """A new file in ``dest``'s folder to write to, with ``FILE_MODE``; flushed to disk and
    renamed over ``dest`` when the block ends, removed when it raises: ``dest`` is either the old
    file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as out:
            os.fchmod(out.fileno(), FILE_MODE)
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_copy(source: str, dest: str) -> None:
    """Copy ``source`` onto ``dest`` through ``atomic_file``."""
    with atomic_file(dest, ".upload") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)


def refuse(what: str, error: Exception, upload: str = "") -> HTTPException:
    detail = str(error).replace(upload, "the uploaded file") if upload else str(error)  # not the server's temp name
    logger.warning(f"refused {what}: {detail}")
    return HTTPException(status_code=422, detail=f"{what} refused: {detail}")


class AtomicWrites:
    """For LocalDatastore and its DICOMweb cache: labels and the datastore file are written to a
    temporary file, flushed and renamed, and a label's destination must be inside the folder
    (``LocalDatastore.save_label`` copies straight onto the destination, and
    ``_update_datastore_file`` rewrites the file in place: a crash in either loses what was
    there)."""

    def _store_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        check_name(label_tag, "label tag")
        _, label_ext = self._to_id(os.path.basename(label_filename))
        label_path = self._datastore.label_path(label_tag)
        dest = inside(self._datastore_path, os.path.join(label_path, self._filename(image_id, label_ext)), f"label for {image_id!r} ({label_tag})")
        with FileLock(self._lock_file):
            os.makedirs(label_path, exist_ok=True)
            atomic_copy(label_filename, dest)
            info = {**(label_info or {}), "ts": int(time.time()), "name": os.path.basename(dest)}
            self._datastore.objects[image_id].labels[label_tag] = DataModel(info=info, ext=label_ext)
            self._update_datastore_file(lock=False)
        return image_id

    def _update_datastore_file(self, lock=True):
        def write():
            self._ignore_event_config = True
            with atomic_file(self._datastore_config_path, ".datastore", "w") as f:
                f.write(json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str))
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()


READS = ("get_image_uri", "get_image_info", "get_label_uri", "get_label_info", "get_labels_by_image_id", "get_label_by_image_id", "list_images", "get_labeled_images", "get_unlabeled_images", "datalist", "status", "json")
WRITES = ("add_image", "remove_image", "save_label", "remove_label", "update_image_info", "update_label_info")


def fresh_from_disk(cls):
    """Reload the datastore file (when its time stamp changed) before every read and write.
    Scoring and training run in other processes and write scores into it; MONAI Label's file
    watcher picks that up late or (after an atomic rename) not at all, and a write from stale
    memory would drop their scores."""

    def wrap(name):
        method = getattr(cls, name)

        def fresh(self, *args, **kwargs):
            self._init_from_datastore_file()
            return method(self, *args, **kwargs)

        fresh.__name__, fresh.__doc__ = name, method.__doc__
        return fresh

    for name in READS + WRITES:
        setattr(cls, name, wrap(name))
    return cls


@fresh_from_disk
class AngioDatastore(AtomicWrites, LocalDatastore):
    def __init__(self, datastore_path: str, **kwargs):
        kwargs.setdefault("extensions", EXTENSIONS)
        super().__init__(datastore_path, **kwargs)

    def _list_files(self, path, patterns):
        return {k: v for k, v in super()._list_files(path, patterns).items() if not is_auxiliary(k)}

    def _add_non_existing_images(self) -> int:
        # a study the readers cannot read (a truncated DICOM, a text file named .png) stays listed,
        # marked with the reason, and is not offered for annotation
        added = super()._add_non_existing_images()
        checked = 0
        for image_id, item in self._datastore.objects.items():
            if "readable" in item.image.info:
                continue
            problem = study_problem(os.path.join(self._datastore.image_path(), self._filename(image_id, item.image.ext)))
            item.image.info["readable"] = problem is None
            if problem:
                item.image.info["unreadable"] = problem
                logger.warning(f"study {image_id!r} cannot be read: {problem}")
            checked += 1
        return added + checked

    def get_unlabeled_images(self, label_tag=None, labels=None) -> List[str]:
        return [i for i in super().get_unlabeled_images(label_tag, labels) if self._datastore.objects[i].image.info.get("readable", True)]

    def _known(self, image_id: str) -> None:
        if image_id not in self._datastore.objects:
            raise HTTPException(status_code=404, detail=f"image {image_id!r} is not in the datastore")

    def get_image_uri(self, image_id: str) -> str:
        self._known(image_id)
        return super().get_image_uri(image_id)

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        default_id, image_ext = self._to_id(os.path.basename(image_filename))
        # an id named by the client must be plain; one taken from the file name is made plain
        image_id = check_name(image_id or re.sub(r"[^A-Za-z0-9._-]+", "_", default_id).strip("._-")[:200], "image id")
        dest = inside(self._datastore_path, os.path.join(self._datastore.image_path(), self._filename(image_id, image_ext)), f"image {image_id!r}")
        try:
            read_angiogram(image_filename, volume_as_frames=True)
        except AngioDataError as e:
            raise refuse(f"image {image_id}", e, image_filename) from e
        if image_id in self._datastore.objects and self._datastore.objects[image_id].labels:
            current = super().get_image_uri(image_id)
            if not (os.path.isfile(current) and filecmp.cmp(current, image_filename, shallow=False)):
                raise HTTPException(status_code=409, detail=f"image {image_id!r} has labels; remove it before uploading a different image under its id")
        # as LocalDatastore.add_image, but the copy is atomic
        with FileLock(self._lock_file):
            atomic_copy(image_filename, dest)
            info = {**(image_info or {}), "ts": int(time.time()), "name": os.path.basename(dest), "readable": True}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=image_ext))
            self._update_datastore_file(lock=False)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        self._known(image_id)
        check_name(label_tag, "label tag")
        try:
            label_info = check_label(super().get_image_uri(image_id), label_filename, label_tag, label_info)
        except (ValueError, AngioDataError) as e:
            raise refuse(f"label for {image_id} ({label_tag})", e, label_filename) from e
        return self._store_label(image_id, label_filename, label_tag, label_info)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        check_name(label_tag, "label tag")
        return super().remove_label(label_id, label_tag)
