"""Bootstrap a vessel segmenter without labels: a small U-Net trained on the official VasoMIM
Sato pseudo-masks (the binary prior: 92nd percentile, 4-connected region from the maximum) of
unlabeled frames, to serve as VasoMIM's frozen segmenter S (option (b) of the consistency loss),
as the official code trains UNeXt-S on them. ``python -m apps.prepare bootstrap-segmenter`` runs
it.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet
from tqdm import tqdm

from ..data.pretrain import pretrain_dataset, pretrain_items
from ..data.writers import atomic_path
from ..transforms import binary_vessel_prior
from ..transforms.binary_prior import border_for

UNET_KWARGS = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "features": (16, 16, 32, 64, 128, 16)}


def bootstrap_unet() -> BasicUNet:
    return BasicUNet(**UNET_KWARGS)


def train_bootstrap_segmenter(
    out: str,
    datalist: Optional[str] = None,
    data_glob: Optional[str] = None,
    iterations: int = 1000,
    batch_size: int = 8,
    image_size: int = 224,
    lr: float = 1e-3,
    percentile: float = 92.0,
    device: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
) -> str:
    """Train on (frame, binary prior) pairs; writes {"network": state_dict} to ``out`` and the
    network's arguments to ``out`` + ".json"."""
    torch.manual_seed(seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = pretrain_dataset(pretrain_items(datalist, data_glob), image_size=image_size, synthetic_length=max(iterations * batch_size, 64), seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size)
    network = bootstrap_unet().to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    step, bar = 0, tqdm(total=iterations, desc="bootstrap segmenter", disable=not progress)
    while step < iterations:
        for batch in loader:
            images = batch["image"].to(device).float()
            with torch.no_grad():  # the official border of a 512-px frame, at this size
                target = binary_vessel_prior(images, border=border_for(images.shape[-1]), percentile=percentile)
            loss = loss_fn(network(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= iterations:
                break
    bar.close()
    with atomic_path(out) as tmp:
        torch.save({"network": network.state_dict()}, tmp)
    with atomic_path(out + ".json") as tmp:
        with open(tmp, "w") as f:
            json.dump({"_target_": "monai.networks.nets.BasicUNet", **{k: list(v) if isinstance(v, tuple) else v for k, v in UNET_KWARGS.items()}}, f, indent=2)
    return os.fspath(out)
