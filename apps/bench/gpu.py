"""The GPU check of the pre-training hot path (issue 26), in well under 5 minutes on one GPU.

ViT-B/16 at 224 px, batch 256, bf16 autocast, the shipped step (``angiokit.engines.train_step``
with the bundle's default objective: guided masking, consistency weight 1.0, norm_pix) against
plain MAE (uniform masking, no consistency), each eager and with the MAE forward compiled
(``angiokit.engines.compile_network``: ``torch.compile(fullgraph=True)``; the masking and the
losses stay eager): images/s, peak memory, and model FLOPs utilisation (the
step's FLOPs counted by ``torch.utils.flop_counter`` over the device's dense bf16 peak). Then
the on-device binary vessel prior's images/s at 224 and 512 px.

    python -m apps.bench gpu [--batch 256] [--peak_tflops 989]
    python -m apps.bench gpu --smoke true     # tiny sizes on the CPU: checks the script runs

Baseline of this run: plain MAE eager (ratios of the others to it are printed).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from angiokit.data.synthetic import SynthConfig, synthesize
from angiokit.engines import VasoMIMObjective, compile_network, train_step
from angiokit.networks import AnatomyGuidance, VasoMIM
from angiokit.optim import global_batch_lr, param_groups
from angiokit.transforms.binary_prior import binary_vessel_prior, border_for

from .common import emit, machine_line

# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by device name
DENSE_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0, "V100": 125.0}


def device_peak_tflops(name: str) -> Optional[float]:
    return next((peak for key, peak in DENSE_BF16_TFLOPS.items() if key in name), None)


def _timed(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    """Median seconds per call after two warm-up calls (compilation happens there)."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _step_flops(step: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def run(batch: int = 256, image_size: int = 224, preset: str = "vit_b16", repeat: int = 10, peak_tflops: Optional[float] = None, smoke: bool = False, compile: bool = True) -> None:
    cuda = torch.cuda.is_available()
    if not cuda and not smoke:
        print("no CUDA device: this benchmark is for a GPU (`--smoke true` runs it at tiny sizes on the CPU)")
        raise SystemExit(2)
    if smoke:
        batch, image_size, preset, repeat = 4, 32, "vit_tiny", 2
    device = torch.device("cuda" if cuda else "cpu")
    print(machine_line(), torch.cuda.get_device_name() if cuda else "cpu", flush=True)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    amp = {"dtype": torch.bfloat16}
    frames = torch.stack([torch.from_numpy(synthesize(SynthConfig(size=image_size), seed=i).image[:1]) for i in range(min(batch, 16))])
    images = frames[torch.arange(batch) % len(frames)].to(device)
    objectives = {
        "mae": VasoMIMObjective(guided=False, consistency_weight=0.0),
        "vasomim": VasoMIMObjective(AnatomyGuidance(), guided=True, consistency_weight=1.0).to(device),
    }
    figures: Dict[str, float] = {}
    for compiled in (False, True) if compile else (False,):
        for name, objective in objectives.items():
            model = VasoMIM(preset, img_size=image_size, norm_pix_loss=True).to(device)
            optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=global_batch_lr(1.5e-4, batch), betas=(0.9, 0.95), fused=cuda)  # as the bundle
            network = compile_network(model, backend="inductor" if cuda else "aot_eager") if compiled else model
            step = lambda: train_step(network, objective, optimizer, images, None, 0.5, amp_kwargs=amp)  # noqa: E731
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            seconds = _timed(step, repeat, sync)
            tag = f"{name}{'_compiled' if compiled else ''}"
            figures[f"{tag}_images_per_s"] = batch / seconds
            if cuda:
                figures[f"{tag}_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            if not compiled:
                flops = _step_flops(step)
                figures[f"{name}_tflops_per_step"] = flops / 1e12
                peak = peak_tflops or (device_peak_tflops(torch.cuda.get_device_name()) if cuda else None)
                if peak:
                    figures[f"{name}_mfu"] = flops / seconds / (peak * 1e12)
            emit(**{k: v for k, v in figures.items() if k.startswith(tag)})
    base = figures["mae_images_per_s"]
    emit(**{f"{k.replace('_images_per_s', '')}_over_mae_eager": v / base for k, v in figures.items() if k.endswith("_images_per_s") and k != "mae_images_per_s"})
    for size in (image_size, 512 if not smoke else 128):
        prior_frames = torch.nn.functional.interpolate(images[: min(batch, 64)].float(), size=(size, size), mode="bilinear")
        seconds = _timed(lambda: binary_vessel_prior(prior_frames, border=border_for(size)), repeat, sync)
        emit(**{f"prior_{size}px_images_per_s": prior_frames.shape[0] / seconds})
