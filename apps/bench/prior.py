"""Vesselness prior + coarse vessel mask: ours (batched torch) vs the official recipe with
skimage (``skimage.filters.sato`` sigmas 1-4, dark ridges -> 92nd percentile -> flood fill from
the maximum with ``skimage.segmentation.flood``), same synthetic frames, same run.

Also reports how well the two agree (Pearson r, IoU of the coarse masks) away from the border
(see ``angiokit.transforms.vesselness`` on skimage's border ridge), and, when CUDA is
available, GPU throughput at 224x224 and 512x512 in batches of 256.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skimage.filters import sato
from skimage.segmentation import flood

from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.transforms import coarse_vessel_mask, vesselness

from .common import emit, machine_line


def skimage_prior(image: np.ndarray):
    prior = sato(image, sigmas=range(1, 5), black_ridges=True)
    above = prior > np.percentile(prior, 92)
    return prior, flood(above, np.unravel_index(np.argmax(prior), prior.shape))


def our_prior(batch: torch.Tensor):
    prior = vesselness(batch)
    return prior, coarse_vessel_mask(prior, 92.0)


def _timed(fn, *args, repeat: int = 1) -> float:
    fn(*args)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def run(size: int = 512, images: int = 8, threads: int = 1, gpu_batch: int = 256):
    torch.set_num_threads(int(threads))
    print(machine_line())
    frames = np.stack([synthesize(SynthConfig(size=int(size)), seed=500 + i).image[0] * 255 for i in range(int(images))]).astype(np.float32)
    batch = torch.from_numpy(frames)

    base_s = _timed(lambda: [skimage_prior(f) for f in frames]) / len(frames)
    # one frame per call on CPU: the working set stays in cache (faster than a big batch)
    ours_s = _timed(lambda: [our_prior(batch[i : i + 1]) for i in range(len(frames))], repeat=3) / len(frames)

    m = 8  # border margin, 2 x the largest sigma
    r, iou = [], []
    for i, f in enumerate(frames):
        ref, ref_mask = skimage_prior(f)
        ours, ours_mask = (t[0].numpy() for t in our_prior(batch[i : i + 1]))
        r.append(np.corrcoef(ref[m:-m, m:-m].ravel(), ours[m:-m, m:-m].ravel())[0, 1])
        a, b = ref_mask[m:-m, m:-m], ours_mask[m:-m, m:-m]
        iou.append((a & b).sum() / max((a | b).sum(), 1))
    emit(size=int(size), images=int(images), threads=int(threads))
    emit(agreement_pearson_min=float(np.min(r)), coarse_mask_iou_mean=float(np.mean(iou)), coarse_mask_iou_min=float(np.min(iou)))
    if torch.cuda.is_available():
        for s in (224, 512):
            gpu = torch.rand(int(gpu_batch), 1, s, s, device="cuda") * 255
            t = _timed(our_prior, gpu, repeat=5)
            emit(**{f"gpu_images_per_s_{s}": gpu_batch / t})
    emit(skimage_images_per_s=1.0 / base_s, ours_images_per_s=1.0 / ours_s)
    emit(prior_speedup_vs_skimage=base_s / ours_s)
