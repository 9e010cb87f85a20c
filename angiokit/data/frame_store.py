"""A packed frame store for pre-training at scale, and the random resized crop that feeds a GPU.

171,478 frames at 512 px do not decode from PNG fast enough for a ViT-B/16 step on a Hopper GPU.
``pack_frames`` decodes them once into a folder that numpy memory-maps::

    OUT/frames.npy   uint8 [N, S, S]  frames, 0.5-99.5 percentiles of each frame scaled to 0-255
    OUT/priors.npy   uint8 [N, S, S]  offline vessel priors as stored (0-255; zeros where absent)
    OUT/index.json   size, count, which files and frames the rows came from, which have a prior

Why ``np.lib.format.open_memmap`` (a plain ``.npy``) rather than LMDB, MONAI's
PersistentDataset or WebDataset: a random read is one slice of a page-cached file, no
deserialisation and no per-item file; LMDB adds a B-tree lookup and a copy out of a pickled
value, PersistentDataset one pickle file per item (171 k files again), and WebDataset shards are
read sequentially (shuffling only within a buffer). Any numpy reads it without angiokit.

``PackedFrameDataset`` serves items ``{"image": [1, S, S] uint8[, "prior": ...]}``; it opens the
memory map lazily in each worker process and pickles without it, so it works under
``DistributedSampler`` and multi-process ``DataLoader``s. On the CPU, the pre-training crop
(``angiokit.transforms.RandResizedCropd``) reads it per item (``configs/packed.json``);
``gpu_random_resized_crop`` does the same crop + flip for a whole uint8 batch on the training
device (MAE / VasoMIM recipe: area 0.2-1, aspect 3/4-4/3, bicubic; nearest for priors).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from .errors import AngioDataError, read_json
from .pretrain import pair_offline_priors, pretrain_items
from .readers import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, detect_format, is_dicom_file, read_angiogram

STORE_FORMAT, STORE_VERSION = "angiokit.frame_store", 1
INDEX_FILE, FRAMES_FILE, PRIORS_FILE = "index.json", "frames.npy", "priors.npy"
INTENSITY = "per frame: 0.5-99.5 percentiles scaled to 0-255 (as train#preprocessing scales the image)"
CROP_SCALE, CROP_RATIO = (0.2, 1.0), (3.0 / 4.0, 4.0 / 3.0)
"""torchvision's / MAE's RandomResizedCrop defaults, which VasoMIM pre-trains with (as
``angiokit.transforms.RandResizedCropd``, the per-item crop on the CPU)."""


# ---- packing -----------------------------------------------------------------------------------


def pack_sources(src, splits: Sequence[str] = ("training",)) -> Tuple[str, List[dict]]:
    """(root, items) for ``src``: a folder tree of frames / DICOM cines / NIfTI (an XA-170K root:
    ``<source>_frangi`` priors paired, never frames), one such file, or a datalist JSON (its
    ``splits``, with "frame" / "prior" keys where given). Paths in the items are absolute."""
    src = os.path.abspath(os.fspath(src))
    if not os.path.exists(src):
        raise AngioDataError(src, "not found; expected a folder of frames, a DICOM / NIfTI / image file or a datalist JSON")
    if os.path.isfile(src) and src.lower().endswith(".json"):
        items = [{k: (os.path.abspath(v) if k in ("image", "prior") else v) for k, v in it.items()} for it in pretrain_items(src, splits=splits)]
        return os.path.dirname(src), items
    if os.path.isfile(src):
        return os.path.dirname(src), [{"image": src}]
    files = []
    suffixes = RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
    for folder, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # hidden: e.g. a half-written pack
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not name.startswith(".") and (name.lower().endswith(suffixes) or ("." not in name and is_dicom_file(path))):
                files.append(path)
    return src, pair_offline_priors(files)


def _frame_count(item: dict) -> int:
    """Frames an item adds, from headers only (the pixels are decoded once, when written)."""
    path = item["image"]
    if "frame" in item:
        return 1
    kind = detect_format(path)
    if kind == "raster":
        return 1
    try:
        if kind == "dicom":
            import pydicom

            return int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
        import nibabel as nib

        shape = nib.load(path).shape  # (H, W), (H, W, 1), (H, W, 1, T) or a stack (H, W, T)
        return int(shape[-1]) if len(shape) >= 3 else 1
    except Exception as e:  # pydicom / nibabel raise many types for corrupt headers
        raise AngioDataError(path, f"cannot read the header to count its frames ({type(e).__name__}: {e})") from e


def _scaled_uint8(frames: np.ndarray, size: int) -> np.ndarray:
    """[T, H, W] float -> [T, size, size] uint8, each frame's 0.5-99.5 percentiles to 0-255,
    then resized (bilinear, anti-aliased) when it is not size x size."""
    lo, hi = np.percentile(frames.reshape(len(frames), -1), (0.5, 99.5), axis=1)
    span = np.where(hi > lo, hi - lo, np.inf)  # a constant frame becomes 0, as MONAI's scaling does
    scaled = np.clip((frames - lo[:, None, None]) / span[:, None, None], 0.0, 1.0).astype(np.float32)
    if scaled.shape[1:] != (size, size):
        scaled = F.interpolate(torch.from_numpy(scaled)[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[:, 0].clamp(0, 1).numpy()
    return np.rint(scaled * 255.0).astype(np.uint8)


def _prior_uint8(prior: np.ndarray, size: int) -> np.ndarray:
    """Prior [T, H, W] as stored (0-255) -> [T, size, size] uint8, nearest (priors are binary)."""
    prior = np.clip(np.rint(prior), 0, 255).astype(np.uint8)
    if prior.shape[1:] != (size, size):
        prior = F.interpolate(torch.from_numpy(prior)[:, None], size=(size, size), mode="nearest-exact")[:, 0].numpy()
    return prior


def _load_for_pack(job: Tuple[dict, int, int]):
    """(frames uint8, prior uint8 or None, index of the first frame in its file) of one item, or
    ("error", path, problem): an ``AngioDataError`` does not survive pickling back from a worker
    process."""
    item, size, expected = job
    path = item["image"]
    try:
        try:
            angio = read_angiogram(path, frames=item.get("frame", "all"), volume_as_frames=True)
            frames = angio.frames
        except AngioDataError:
            raise
        except Exception as e:  # a decoder's own error type: still name the file
            raise AngioDataError(path, f"cannot read as frames ({type(e).__name__}: {e})") from e
        if len(frames) != expected:
            raise AngioDataError(path, f"holds {len(frames)} frames, its header said {expected}")
        prior = None
        if item.get("prior"):
            raw = read_angiogram(item["prior"], volume_as_frames=True).frames
            if raw.shape != frames.shape:
                raise AngioDataError(item["prior"], f"prior of shape {raw.shape} for frames of shape {frames.shape} ({path})")
            prior = _prior_uint8(raw, size)
        return _scaled_uint8(frames, size), prior, int(angio.meta.get("frame_index", 0))
    except AngioDataError as e:
        return ("error", e.path, e.problem)


def _one_thread_worker() -> None:
    torch.set_num_threads(1)  # one item per process: the workers share the cores


def _in_order(pool: ProcessPoolExecutor, jobs: Sequence, ahead: int) -> Iterator:
    """``_load_for_pack`` of each job, in order, at most ``ahead`` in flight: decoded frames wait
    in memory only until written (``Executor.map`` would queue every job at once)."""
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.submit(_load_for_pack, job))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _check_destination(out: str) -> None:
    if os.path.isfile(out) or (os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, INDEX_FILE))):
        raise AngioDataError(out, "exists and is not a frame store; refusing to replace it (choose a new folder)")


def pack_frames(src, out, size: int = 512, splits: Sequence[str] = ("training",), workers: int = 1, progress: bool = True) -> str:
    """Pack every frame under ``src`` (see ``pack_sources``) into a frame store at ``out``; returns ``out``.

    Frames are decoded in ``workers`` processes and written in order into memory-mapped ``.npy``
    files of a hidden folder beside ``out``, which replaces ``out`` only when complete (an
    interrupted pack leaves any previous store intact). An unreadable frame stops the pack with
    an ``AngioDataError`` naming the file.
    """
    from tqdm import tqdm

    size, out = int(size), os.path.abspath(os.fspath(out))
    root, items = pack_sources(src, splits)
    if not items:
        raise AngioDataError(src, f"no frames found (looked for {', '.join(RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES)} files)")
    _check_destination(out)
    counts = [_frame_count(it) for it in tqdm(items, desc="counting frames", unit="file", disable=not progress or len(items) < 1000)]
    total, with_prior = sum(counts), any(it.get("prior") for it in items)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    needed = total * size * size * (2 if with_prior else 1)
    free = shutil.disk_usage(parent).free
    if needed > free:  # a memory map past a full disk dies with SIGBUS, not an error
        raise AngioDataError(out, f"needs {needed / 1e9:.1f} GB for {total} frames at {size} px, {free / 1e9:.1f} GB free")

    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a private folder; give the usual permissions
        frames = np.lib.format.open_memmap(os.path.join(tmp, FRAMES_FILE), mode="w+", dtype=np.uint8, shape=(total, size, size))
        priors = np.lib.format.open_memmap(os.path.join(tmp, PRIORS_FILE), mode="w+", dtype=np.uint8, shape=(total, size, size)) if with_prior else None
        sources: List[dict] = []
        jobs = [(it, size, n) for it, n in zip(items, counts)]
        row = 0
        # spawned, not forked (a forked torch / OpenMP runtime can hang); an executor, not a Pool,
        # so a worker that dies (killed for memory, a decoder crash) is an error, not a hang
        pool = ProcessPoolExecutor(int(workers), mp_context=mp.get_context("spawn"), initializer=_one_thread_worker) if int(workers) > 1 else None
        try:
            results = _in_order(pool, jobs, ahead=8 * int(workers)) if pool else map(_load_for_pack, jobs)
            with tqdm(total=total, desc=f"packing frames into {out}", unit="frame", disable=not progress) as bar:
                for item, result in zip(items, results):
                    if isinstance(result[0], str):  # ("error", path, problem)
                        raise AngioDataError(result[1], result[2])
                    image, prior, first_frame = result
                    frames[row : row + len(image)] = image
                    if priors is not None:
                        priors[row : row + len(image)] = prior if prior is not None else 0
                    for t in range(len(image)):
                        entry = {"image": os.path.relpath(item["image"], root), "frame": first_frame + t}
                        if prior is not None:
                            entry["prior"] = os.path.relpath(item["prior"], root)
                        sources.append(entry)
                    row += len(image)
                    bar.update(len(image))
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        frames.flush()
        del frames
        if priors is not None:
            priors.flush()
            del priors
        index = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "size": size,
            "count": total,
            "dtype": "uint8",
            "intensity": INTENSITY,
            "frames": FRAMES_FILE,
            "priors": PRIORS_FILE if with_prior else None,
            "prior_count": sum("prior" in s for s in sources),
            "root": root,
            "sources": sources,
        }
        with open(os.path.join(tmp, INDEX_FILE), "w") as f:
            json.dump(index, f)
            f.write("\n")
        _replace_folder(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace_folder(new: str, out: str) -> None:
    """Rename ``new`` to ``out``, moving a previous ``out`` aside first (folders do not rename
    over non-empty folders) and deleting it once the new one is in place."""
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".old", dir=os.path.dirname(out))
        os.rmdir(old)
        os.rename(out, old)
    os.rename(new, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def read_store_index(path) -> dict:
    """The index of the frame store at ``path``; an ``AngioDataError`` when it is not one."""
    index = read_json(os.path.join(os.fspath(path), INDEX_FILE), "frame store index")
    if index.get("format") != STORE_FORMAT or int(index.get("version", -1)) != STORE_VERSION:
        raise AngioDataError(os.path.join(os.fspath(path), INDEX_FILE), f"not a frame store index of version {STORE_VERSION} ({STORE_FORMAT}); repack with `python -m apps.prepare pack`")
    return index


# ---- reading -----------------------------------------------------------------------------------


class PackedFrameDataset(torch.utils.data.Dataset):
    """The frames of a store by ``pack_frames``: items ``{"image": [1, S, S] uint8}`` (+ ``"prior"``,
    same shape and type) through ``transform`` (``configs/packed.json``: crop, scale to [0, 1],
    flip; none: the uint8 frames for ``gpu_random_resized_crop``).

    Args:
        path: the store folder.
        transform: applied to each item dict.
        with_prior: serve priors; None: when every frame has one (priors for only some frames
            would not collate into one batch; the missing ones are computed on the fly instead).
    """

    def __init__(self, path, transform=None, with_prior: Optional[bool] = None):
        self.path, self.transform = os.fspath(path), transform
        index = read_store_index(self.path)
        self.size, self.count = int(index["size"]), int(index["count"])
        all_priors = bool(index.get("priors")) and int(index.get("prior_count", 0)) == self.count
        if with_prior and not all_priors:
            raise AngioDataError(self.path, f"{index.get('prior_count', 0)} of {self.count} frames have an offline prior; with_prior needs all")
        self.with_prior = all_priors if with_prior is None else bool(with_prior)
        self._files = {"image": os.path.join(self.path, index["frames"])}
        if self.with_prior:
            self._files["prior"] = os.path.join(self.path, index["priors"])
        for key, file in self._files.items():  # check now, not first in a worker process
            if not os.path.isfile(file):
                raise AngioDataError(file, "missing from the frame store")
            array = np.load(file, mmap_mode="r")
            if array.shape != (self.count, self.size, self.size) or array.dtype != np.uint8:
                raise AngioDataError(file, f"holds {array.dtype} {array.shape}; the index says uint8 {(self.count, self.size, self.size)}")
            del array
        self._arrays: Optional[Dict[str, np.ndarray]] = None

    def __len__(self) -> int:
        return self.count

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # each process maps the files itself
        return state

    def __getitem__(self, index: int) -> dict:
        if self._arrays is None:
            self._arrays = {key: np.load(file, mmap_mode="r") for key, file in self._files.items()}
        # np.array copies the row out of the map: a writable tensor that collates into shared memory
        item = {key: torch.from_numpy(np.array(array[index]))[None] for key, array in self._arrays.items()}
        return self.transform(item) if self.transform is not None else item


# ---- random resized crop on the training device -----------------------------------------------


def _fallback_size(height: int, width: int, ratio) -> Tuple[float, float]:
    """(w, h) of torchvision's fallback: the whole frame, narrowed to the allowed aspect range."""
    aspect = width / height
    if aspect < min(ratio):
        return float(width), width / min(ratio)
    if aspect > max(ratio):
        return height * max(ratio), float(height)
    return float(width), float(height)


def sample_crop_boxes(batch: int, height: int, width: int, generator: Optional[torch.Generator] = None, device=None, scale=CROP_SCALE, ratio=CROP_RATIO, flip_prob: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crop boxes [B, 4] (x0, y0, x1, y1 in pixels, edges: the frame is [0, W] x [0, H])
    and flips [B] bool, sampled on ``device`` without a host sync: torchvision's 10 tries drawn at
    once, the first that fits taken by ``argmax``, its fallback by ``where``. Boxes are not rounded
    to whole pixels (the resampling does not need it)."""
    u = torch.rand(batch, 10, 4, generator=generator, device=device)  # area, log-aspect, x, y
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w_try, h_try = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (w_try <= width) & (h_try <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting try (0 if none)
    w, h, ux, uy = (t.gather(1, first)[:, 0] for t in (w_try, h_try, u[..., 2], u[..., 3]))
    any_fit = fits.any(dim=1)
    fallback_w, fallback_h = _fallback_size(height, width, ratio)
    w = torch.where(any_fit, w, torch.full_like(w, fallback_w))
    h = torch.where(any_fit, h, torch.full_like(h, fallback_h))
    ux, uy = torch.where(any_fit, ux, torch.full_like(ux, 0.5)), torch.where(any_fit, uy, torch.full_like(uy, 0.5))
    x0, y0 = ux * (width - w), uy * (height - h)
    flips = torch.rand(batch, generator=generator, device=device) < flip_prob
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1), flips


def _antialias_blur(x: torch.Tensor, factor_x: torch.Tensor, factor_y: torch.Tensor, max_factor: float) -> torch.Tensor:
    """Per-sample separable Gaussian before downsampling by ``factor`` (grid_sample has no
    anti-aliasing): sigma = max(0, (factor - 1) / 2) as ``skimage.transform.resize``; a sample
    that is not downsampled gets sigma 0, an exact identity. One grouped convolution per axis."""
    radius = int(math.ceil(3.0 * max(0.0, (max_factor - 1.0) / 2.0)))
    if radius == 0:
        return x
    b, c, hgt, wid = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)

    def kernels(factor):
        sigma = ((factor.to(x.dtype) - 1.0).clamp(min=0.0) / 2.0).clamp(min=1e-3)  # 1e-3: a delta
        k = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
        return (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)[:, None]  # [B*C, 1, K]

    y = x.reshape(1, b * c, hgt, wid)
    # replicate: the border padding grid_sample uses, and valid for any frame size (reflect is not)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernels(factor_x)[:, :, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernels(factor_y)[:, :, :, None], groups=b * c)
    return y.reshape(b, c, hgt, wid)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int, flips: Optional[torch.Tensor] = None, mode: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Crop ``boxes`` [B, 4] (x0, y0, x1, y1, pixel edges) out of ``images`` [B, C, H, W] (uint8
    0-255 or float) and resize each to ``size`` x ``size`` with ``F.grid_sample`` on per-sample
    affine grids; ``flips`` [B] mirrors left-right. Returns float32 [B, C, size, size], in [0, 1]
    for uint8 input."""
    b, c, hgt, wid = images.shape
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if antialias and mode != "nearest":
        x = _antialias_blur(x, box_w / size, box_h / size, max(hgt, wid) / size)
    # align_corners=False: normalised -1 / 1 are the frame's outer edges, so the grid maps output
    # pixel centres onto the box, edge to edge
    scale_x = box_w / wid
    if flips is not None:
        scale_x = torch.where(flips.to(x.device), -scale_x, scale_x)
    zero = torch.zeros_like(scale_x)
    theta = torch.stack(
        [
            torch.stack([scale_x, zero, (boxes[:, 0] + boxes[:, 2]) / wid - 1.0], dim=1),
            torch.stack([zero, box_h / hgt, (boxes[:, 1] + boxes[:, 3]) / hgt - 1.0], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [b, c, int(size), int(size)], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0) if images.dtype == torch.uint8 else out


def gpu_random_resized_crop(images: torch.Tensor, priors: Optional[torch.Tensor], size: int, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Random resized crop + horizontal flip of a uint8 batch on its device, no host syncs.

    Args:
        images: [B, 1, H, W] uint8 (0-255), e.g. a ``PackedFrameDataset`` batch moved to the GPU.
        priors: [B, 1, H, W] uint8 offline priors, or None.
        size: output side.
        generator: a ``torch.Generator`` on the images' device, for reproducible crops.

    Returns:
        images [B, 1, size, size] float32 in [0, 1] (bicubic, anti-aliased) and priors the same
        shape, float32 in [0, 1] (nearest, the same boxes and flips), or None.
    """
    b, _, hgt, wid = images.shape
    boxes, flips = sample_crop_boxes(b, hgt, wid, generator=generator, device=images.device)
    out = resized_crop(images, boxes, size, flips, mode="bicubic")
    out_priors = resized_crop(priors, boxes, size, flips, mode="nearest") if priors is not None else None
    return out, out_priors


class GPURandomResizedCrop:
    """``gpu_random_resized_crop`` at ``size`` as a trainer's ``batch_transform``
    ``(images, prior) -> (images, prior)`` (a class, so a config can build it and it pickles)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, images: torch.Tensor, priors: Optional[torch.Tensor] = None):
        return gpu_random_resized_crop(images, priors, self.size)


__all__ = [
    "GPURandomResizedCrop",
    "PackedFrameDataset",
    "gpu_random_resized_crop",
    "pack_frames",
    "pack_sources",
    "read_store_index",
    "resized_crop",
    "sample_crop_boxes",
]
