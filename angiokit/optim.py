"""Optimizer settings shared by the bundles: parameter groups and the learning rate of the
global batch.

``param_groups`` follows timm / MAE: parameters that do not train are left out; biases and
every other 1-D parameter (norm weights) get no weight decay, nor do the parameters named in
``no_weight_decay``. MAE pre-training names none (its position embeddings are fixed sin-cos and
do not train; its cls and mask tokens are decayed); MAE fine-tuning names the ViT's position
embedding and cls token (timm's ``no_weight_decay()``). With ``layer_decay`` < 1 the groups also
carry layer-wise learning-rate scales (BEiT / MAE fine-tuning) for networks with a ``vit``.

``global_batch_lr``: lr = base lr x global batch / 256, the global batch being the batch per
process x processes x gradient-accumulation steps (MAE's ``eff_batch_size``); it logs the
figures once, on rank 0.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

PRETRAIN_EMBEDDINGS = ("cls_token", "mask_tokens", "position_embeddings", "decoder_pos_embedding")
"""Token and position parameters of MONAI's ``MaskedAutoEncoderViT`` (``--no_weight_decay`` of the
pre-training bundle takes them for the fine-tuning rule)."""


def _named(name: str, names: Sequence[str]) -> bool:
    """``name`` is one of ``names``, or ends with ".<one of them>" (so ``cls_token`` also names
    ``vit.cls_token``)."""
    return any(name == n or name.endswith("." + n) for n in names)


def decays(name: str, param: torch.Tensor, no_weight_decay: Sequence[str] = ()) -> bool:
    """Whether ``param`` gets weight decay: not 1-D (biases, norm weights), not a bias, not named
    in ``no_weight_decay``."""
    return not (param.ndim <= 1 or name.endswith(".bias") or _named(name, no_weight_decay))


def _vit_layer(name: str, depth: int) -> int:
    """Layer id for layer-wise lr decay: 0 for the patch embedding, i + 1 for block i, depth + 1
    for everything after the blocks. The ViT may sit below a prefix (a detector's
    ``feature_extractor.vit.``)."""
    if not name.startswith("vit."):
        at = name.find(".vit.")
        if at < 0:
            return depth + 1
        name = name[at + 1 :]
    if name.startswith("vit.patch_embedding") or name == "vit.cls_token":
        return 0
    if name.startswith("vit.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups(
    network: torch.nn.Module,
    weight_decay: float = 0.05,
    no_weight_decay: Sequence[str] = (),
    lr: Optional[float] = None,
    layer_decay: float = 1.0,
) -> List[Dict]:
    """AdamW parameter groups.

    Args:
        network: the model (a DistributedDataParallel wrapper is looked through).
        weight_decay: decay of the groups that decay.
        no_weight_decay: parameter names (or name endings) that get none, besides 1-D ones.
        lr: base lr of the groups when ``layer_decay`` scales it (else the optimizer's ``lr``).
        layer_decay: < 1: block i of a network's ``vit`` gets lr x layer_decay ** (depth - i),
            the patch embedding lr x layer_decay ** (depth + 1), the rest lr; each group carries
            its ``lr_scale``.

    Returns:
        one group per (layer, decays) pair, in order of first appearance; frozen parameters are
        left out.
    """
    network = getattr(network, "module", network)
    depth = len(getattr(getattr(network, "vit", None), "blocks", [])) if layer_decay != 1.0 else 0
    groups: Dict[tuple, Dict] = {}
    for name, p in network.named_parameters():
        if not p.requires_grad:
            continue
        decay = weight_decay if decays(name, p, no_weight_decay) else 0.0
        layer = _vit_layer(name, depth) if depth else 0
        scale = layer_decay ** (depth + 1 - layer) if depth else 1.0
        group = groups.get((layer, decay))
        if group is None:
            group = groups[(layer, decay)] = {"params": [], "weight_decay": decay}
            if depth:
                group["lr_scale"] = scale
                if lr is not None:
                    group["lr"] = lr * scale
        group["params"].append(p)
    return list(groups.values())


def world_size() -> int:
    """Processes of the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_batch_lr(base_lr: float, batch_size: int, processes: Optional[int] = None, accumulation_steps: int = 1) -> float:
    """lr = ``base_lr`` x global batch / 256, global batch = ``batch_size`` (per process) x
    ``processes`` (default: the process group's size) x ``accumulation_steps``; logged once, on
    rank 0."""
    processes = world_size() if processes is None else int(processes)
    global_batch = int(batch_size) * processes * int(accumulation_steps)
    lr = float(base_lr) * global_batch / 256
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        logger.info(
            "lr %.3g = base lr %.3g x global batch %d / 256 (batch %d per process x %d processes x %d accumulation steps)",
            lr, float(base_lr), global_batch, int(batch_size), processes, int(accumulation_steps),
        )
    return lr


__all__ = ["PRETRAIN_EMBEDDINGS", "decays", "global_batch_lr", "param_groups", "world_size"]
