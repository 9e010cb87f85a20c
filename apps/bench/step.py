"""One VasoMIM training step (guidance map, guided masking, reconstruction + anatomical
consistency loss, backward, AdamW) vs one plain MAE step (uniform masking, reconstruction loss)
with the same ViT, batch and optimizer, same run. Both are the shipped step with the bundle's
defaults: the trainer's ``angiokit.engines.train_step`` with its ``VasoMIMObjective`` (guided at
alpha 0.5, the binary prior computed on the device, consistency weight 1 on the whole
prediction; or plain MAE), norm_pix_loss on, AdamW with ``angiokit.optim.param_groups``; not a
copy.

CPU default: ViT-S/16 at 224 px, batch 16 (a ViT-B/16 step at batch 256 takes minutes on a CPU);
on CUDA: ViT-B/16, batch 256, bf16 autocast, plus images/s.
"""

from __future__ import annotations

import statistics
import time

import torch

from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.engines import VasoMIMObjective, train_step
from angiokit.networks import AnatomyGuidance, VasoMIM
from angiokit.optim import param_groups

from .common import emit, machine_line


def _median_times(fns, repeat: int):
    """Median seconds per call of each function, calls interleaved (so drifts in machine load
    hit both alike), after one warm-up call each."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeat):
        for fn, bucket in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run(preset: str = None, batch: int = None, image_size: int = 224, repeat: int = 3, threads: int = 1, **model_overrides):
    torch.set_num_threads(int(threads))
    print(machine_line())
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    preset = preset or ("vit_b16" if cuda else "vit_s16")
    batch = int(batch or (256 if cuda else 16))
    model = VasoMIM(preset, img_size=int(image_size), **{"norm_pix_loss": True, **model_overrides}).to(device)
    vasomim = VasoMIMObjective(AnatomyGuidance(prior="binary"), guided=True, consistency_weight=1.0, consistency_input="prediction").to(device)
    plain_mae = VasoMIMObjective(guided=False, consistency_weight=0.0)
    dtype = torch.bfloat16 if cuda else None
    amp_kwargs = {"dtype": dtype} if dtype is not None else None
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    frames = [torch.from_numpy(synthesize(SynthConfig(size=int(image_size)), seed=i).image[:1]) for i in range(min(batch, 16))]
    images = torch.stack([frames[i % len(frames)] for i in range(batch)]).to(device)
    steps = [lambda: train_step(model, plain_mae, optimizer, images, alpha=0.0, amp_kwargs=amp_kwargs), lambda: train_step(model, vasomim, optimizer, images, alpha=0.5, amp_kwargs=amp_kwargs)]
    mae_s, vaso_s = _median_times(steps, int(repeat))
    emit(device=str(device), preset=preset, batch=batch, image_size=int(image_size), autocast=str(dtype))
    emit(mae_step_s=mae_s, vasomim_step_s=vaso_s, mae_images_per_s=batch / mae_s, vasomim_images_per_s=batch / vaso_s)
    emit(vasomim_over_mae_step=vaso_s / mae_s)
