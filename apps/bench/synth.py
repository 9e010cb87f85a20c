"""Synthetic angiogram generator throughput at 512x512 on one core.

Baseline, same run, same tubes: the textbook way to draw tubes with a projected thickness - one
full-frame Euclidean distance transform per vessel (scipy) to its rasterised centreline - against
our windowed, layered torch rasteriser.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.data.synthetic.engine import AngiogramScene
from angiokit.data.synthetic.tube_raster import rasterize_tubes

from .common import emit, machine_line, per_second


def edt_rasterize(tubes, shape):
    """Baseline: per tube, EDT to its centreline pixels -> chord length from the distance."""
    total = np.zeros(shape, np.float32)
    for t in tubes:
        seg_len = np.linalg.norm(np.diff(t.xy, axis=0), axis=1)
        steps = np.maximum(np.ceil(seg_len / 0.5).astype(int), 1)
        idx = np.repeat(np.arange(len(seg_len)), steps)
        frac = np.concatenate([np.arange(s) / s for s in steps])
        pts = t.xy[idx] + frac[:, None] * (t.xy[idx + 1] - t.xy[idx])
        radius = t.radius_px[idx] + frac * (t.radius_px[idx + 1] - t.radius_px[idx])
        weight = t.weight[idx]
        cells = np.rint(pts[:, ::-1]).astype(int)
        ok = (cells >= 0).all(1) & (cells[:, 0] < shape[0]) & (cells[:, 1] < shape[1])
        if not ok.any():
            continue
        owner = np.full(shape, -1)
        owner[cells[ok, 0], cells[ok, 1]] = np.flatnonzero(ok)
        dist, (ri, ci) = distance_transform_edt(owner < 0, return_indices=True)
        nearest = owner[ri, ci]
        r = radius[nearest]
        total += 2 * np.sqrt(np.clip(r * r - dist * dist, 0, None)) * weight[nearest]
    return total


def run(size: int = 512, images: int = 40, scenes: int = 8, threads: int = 1):
    torch.set_num_threads(int(threads))
    print(machine_line())
    cfg = SynthConfig(size=int(size))
    emit(size=int(size), threads=int(threads), images=int(images))

    tube_sets = []
    for s in range(int(scenes)):
        scene = AngiogramScene(cfg, 1000 + s)
        tube_sets.append(scene._vessel_tubes(scene.frame_time_s(0), 1.0))
    shape = (cfg.size, cfg.size)
    ours = per_second(lambda i: rasterize_tubes(tube_sets[i % len(tube_sets)], shape)[0], 2 * len(tube_sets))
    base = per_second(lambda i: edt_rasterize(tube_sets[i % len(tube_sets)], shape), len(tube_sets), warmup=1)
    emit(raster_frames_per_s=ours, edt_baseline_frames_per_s=base, raster_speedup_vs_edt=ours / base)

    rate = per_second(lambda i: synthesize(cfg, seed=i + 10), int(images))
    emit(synth_images_per_s=rate)
