"""Pre-training data loading per worker process, one core: 224 px crops of 512 px frames.

Baseline, same run, same frames: the PNG path, each item a PNG frame and its offline prior read
and put through the shipped CPU pipeline (``train#preprocessing`` of the vasomim_pretrain
``train.json``). Ours: the packed path, ``PackedFrameDataset`` with ``configs/packed.json``'s
pipeline (memmap read, crop + resize, scale, flip). The frames are synthetic, written as XA-170K
lays them out (``synthetic/`` + ``synthetic_frangi/``, vessel masks as the priors). With CUDA
the batched ``gpu_random_resized_crop`` is timed too.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import torch
from monai.bundle import ConfigParser

from angiokit.data import to_uint, write_mask_png, write_png
from angiokit.data.frame_store import PackedFrameDataset, gpu_random_resized_crop, pack_frames
from angiokit.data.pretrain import pretrain_items
from angiokit.data.synthetic import SynthConfig, synthesize

from .common import emit, machine_line, per_second

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "bundles", "vasomim_pretrain", "configs")
CINE_FRAMES = 8  # frames per synthetic cine: a scene's tree and background serve 8 frames


def write_frames(root: str, frames: int, size: int, seed: int) -> None:
    """``frames`` synthetic frames as ``root/synthetic/*.png``, their vessel masks (0/255) as
    ``root/synthetic_frangi/*.png``."""
    cfg = SynthConfig(size=size, frames=CINE_FRAMES)
    for cine in range(math.ceil(frames / CINE_FRAMES)):
        sample = synthesize(cfg, seed + cine)
        for t in range(min(CINE_FRAMES, frames - cine * CINE_FRAMES)):
            name = f"c{cine:04d}_f{t:02d}.png"
            write_png(os.path.join(root, "synthetic", name), to_uint(sample.image[t]))
            write_mask_png(os.path.join(root, "synthetic_frangi", name), sample.vessel[t])


def bundle_part(configs, item_id: str, **overrides):
    """``item_id`` built from the vasomim_pretrain configs (later files override earlier ones)."""
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, f"{name}.json") for name in configs])
    parser.update(overrides)
    return parser.get_parsed_content(item_id)


def gpu_crop_rate(store: str, batch: int, crop: int) -> float:
    """Images per second of ``gpu_random_resized_crop`` on a uint8 batch of the store's frames."""
    dataset = PackedFrameDataset(store)
    rows = [dataset[i % len(dataset)] for i in range(batch)]
    images = torch.stack([r["image"] for r in rows]).cuda()
    priors = torch.stack([r["prior"] for r in rows]).cuda() if "prior" in rows[0] else None
    generator = torch.Generator(device="cuda").manual_seed(0)

    def step(_):
        gpu_random_resized_crop(images, priors, crop, generator)

    for i in range(3):
        step(i)
    torch.cuda.synchronize()
    start, repeats = time.perf_counter(), 20
    for i in range(repeats):
        step(i)
    torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def run(frames: int = 256, size: int = 512, crop: int = 224, threads: int = 1, seed: int = 0, gpu_batch: int = 256):
    torch.set_num_threads(int(threads))
    print(machine_line())
    frames, size, crop = int(frames), int(size), int(crop)
    emit(frames=frames, size=size, crop=crop, threads=int(threads))
    with tempfile.TemporaryDirectory(prefix="angiokit_loader_") as tmp:
        root = os.path.join(tmp, "xa170k")
        write_frames(root, frames, size, seed)

        # baseline: PNG frames + priors through the shipped CPU pipeline
        items = pretrain_items(data_glob=os.path.join(root, "**", "*.png"))
        assert len(items) == frames and all("prior" in it for it in items), "the listing should pair every frame with its prior"
        png_transform = bundle_part(["train"], "train#preprocessing", image_size=crop)
        png_transform.set_random_state(seed)
        png = per_second(lambda i: png_transform(dict(items[i % frames])), frames)

        # ours: pack once, then memmap read + the packed pipeline
        start = time.perf_counter()
        store = pack_frames(root, os.path.join(tmp, "store"), size=size, progress=False)
        pack = frames / (time.perf_counter() - start)
        dataset = bundle_part(["train", "packed"], "train#dataset", image_size=crop, packed_store=store)
        dataset.transform.set_random_state(seed)
        sample = dataset[0]
        assert sample["image"].shape == (1, crop, crop) and "prior" in sample
        packed = per_second(lambda i: dataset[i % frames], 4 * frames)
        raw = PackedFrameDataset(store)  # what a worker does for the GPU crop: read the uint8 frames
        read = per_second(lambda i: raw[i % frames], 8 * frames)

        emit(png_images_per_s=png, pack_images_per_s=pack, packed_read_only_images_per_s=read)
        if torch.cuda.is_available():
            emit(gpu_crop_images_per_s=gpu_crop_rate(store, int(gpu_batch), crop), gpu_batch=int(gpu_batch))
    emit(packed_images_per_s=packed, packed_speedup_vs_png=packed / png, loader_images_per_s_per_worker=packed)


__all__ = ["run", "write_frames"]
