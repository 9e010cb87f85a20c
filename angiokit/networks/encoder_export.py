"""Move a pre-trained VasoMIM encoder into MONAI's ``ViT`` / ``UNETR`` key layout, strictly.

MAE keeps the encoder's final LayerNorm as the last entry of ``blocks`` (``blocks.{L}``); MONAI's
``ViT`` calls it ``norm``. ``UNETR`` holds the ViT under ``vit.``. Patch embedding, position
embedding and the transformer blocks keep their names.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import torch
from torch import nn

ENCODER_PREFIXES = ("patch_embedding.", "blocks.", "cls_token")


class EncoderKeyError(RuntimeError):
    """Raised when encoder weights do not fit the target network exactly."""


def encoder_state_dict(mae_state: Dict[str, torch.Tensor], num_layers: int) -> Dict[str, torch.Tensor]:
    """VasoMIM / MAE state dict -> MONAI ``ViT`` encoder state dict (decoder dropped)."""
    out = {}
    final_norm = re.compile(rf"^blocks\.{num_layers}\.(weight|bias)$")
    for key, value in mae_state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if not key.startswith(ENCODER_PREFIXES):
            continue
        m = final_norm.match(key)
        out[f"norm.{m.group(1)}" if m else key] = value
    return out


def load_encoder(network: nn.Module, encoder_state: Dict[str, torch.Tensor], strict: bool = True) -> Tuple[List[str], List[str]]:
    """Load an exported encoder into a ``ViT`` or a network that holds one (``UNETR.vit``).

    Returns (missing, unexpected) encoder keys; with ``strict`` any missing key, unexpected key
    or shape mismatch raises ``EncoderKeyError`` listing them. The ViT's ``cls_token`` is only
    expected when the target has one (classification ViTs); heads are not encoder keys.
    """
    vit = getattr(network, "vit", network)
    # only encoder keys count: a classification head (or anything else) stays as initialised
    target = {k: v for k, v in vit.state_dict().items() if k.startswith(ENCODER_PREFIXES + ("norm.",))}
    source = {k: v for k, v in encoder_state.items() if k != "cls_token" or "cls_token" in target}
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    shapes = [f"{k}: {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in sorted(set(source) & set(target)) if source[k].shape != target[k].shape]
    if strict and (missing or unexpected or shapes):
        raise EncoderKeyError(
            f"encoder does not fit {type(vit).__name__}: missing {missing[:10]}{'...' if len(missing) > 10 else ''} "
            f"({len(missing)}), unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''} ({len(unexpected)}), "
            f"shape mismatches {shapes[:5]}"
        )
    vit.load_state_dict({k: v for k, v in source.items() if k in target and source[k].shape == target[k].shape}, strict=False)
    return missing, unexpected


def resize_position_embeddings(pos: torch.Tensor, size, antialias: bool = False) -> torch.Tensor:
    """[1, N, D] position embeddings of a square grid -> [1, h * w, D] (bicubic), so an encoder
    pre-trained at one size fine-tunes at another. ``size``: a patch count (a square grid) or an
    (h, w) grid. ``antialias=False`` resamples as MAE's ``interpolate_pos_embed`` does (our own
    exports), ``True`` as timm's ``resample_abs_pos_embed`` (checkpoints from timm / MAE / Hugging
    Face, ``foreign_weights``)."""
    import math

    import torch.nn.functional as F

    n, d = pos.shape[1], pos.shape[2]
    if not isinstance(size, (tuple, list)):  # a patch count (MONAI's n_patches may be a numpy int)
        size = int(size)
        side = math.isqrt(size)
        if side * side != size:
            raise ValueError(f"position embeddings of {n} patches cannot be resized to {size}: both grids must be square")
        size = (side, side)
    size = tuple(int(s) for s in size)
    if n == size[0] * size[1]:
        return pos
    old = math.isqrt(n)
    if old * old != n:
        raise ValueError(f"position embeddings of {n} patches cannot be resized to {size[0]}x{size[1]}: both grids must be square")
    grid = pos.reshape(1, old, old, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=size, mode="bicubic", align_corners=False, antialias=antialias)
    return grid.permute(0, 2, 3, 1).reshape(1, size[0] * size[1], d).to(pos.dtype)


def load_encoder_file(network: nn.Module, path: str, expected: Dict = None) -> Tuple[List[str], List[str]]:
    """Load an ``export_encoder`` file into ``network`` (a ViT or a network with ``.vit``):
    checks the exported configuration against ``expected`` (hidden_size, num_layers, ...),
    resizes position embeddings to the network's patch grid, then loads strictly."""
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: pre-trained encoder not found (train the VasoMIM bundle, or give no pretrained_encoder)")
    exported = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(exported, dict) or "encoder" not in exported:
        raise ValueError(f"{path}: not an encoder export (expected a dict with 'encoder' and 'config')")
    theirs = exported.get("config", {})
    clash = {k: (theirs[k], v) for k, v in (expected or {}).items() if k in theirs and theirs[k] != v}
    if clash:
        raise ValueError(f"{path}: encoder was pre-trained with {', '.join(f'{k}={a}' for k, (a, b) in clash.items())}; this network has {', '.join(f'{k}={b}' for k, (a, b) in clash.items())}")
    state = dict(exported["encoder"])
    vit = getattr(network, "vit", network)
    key = "patch_embedding.position_embeddings"
    if key in state:
        state[key] = resize_position_embeddings(state[key], vit.patch_embedding.n_patches)
    return load_encoder(network, state, strict=True)


SIZE_KEYS = ("hidden_size", "mlp_dim", "num_layers", "num_heads")


def vit_sizes(preset: str, overrides: Dict, pretrained_encoder: str = None, pretrained_format: str = "auto") -> Dict:
    """The ViT sizes a network builds: the preset's, then those a pre-trained encoder holds (an
    export's recorded sizes, or those read off a MAE / timm / Hugging Face checkpoint:
    ``foreign_weights.checkpoint_sizes``), so fine-tuning never restates the sizes of
    pre-training, then explicit ``overrides`` (which must agree with the encoder: loading checks)."""
    import os

    from .presets import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    recorded = {}
    if pretrained_encoder and os.path.exists(pretrained_encoder):
        from .foreign_weights import checkpoint_sizes

        recorded = {k: v for k, v in checkpoint_sizes(pretrained_encoder, pretrained_format).items() if k in SIZE_KEYS}
    return {**PRESETS[preset], **recorded, **overrides}


def vit_config(vit: nn.Module) -> Dict:
    """The encoder arguments an export must match, read off a MONAI ViT."""
    block = vit.blocks[0]
    return {
        "hidden_size": vit.patch_embedding.patch_embeddings.weight.shape[0],
        "num_layers": len(vit.blocks),
        "mlp_dim": block.mlp.linear1.out_features,
        "num_heads": block.attn.num_heads,
    }


def export_encoder(mae: nn.Module, path: str) -> str:
    """Write {"encoder": ViT-layout state dict, "config": ViT constructor arguments} to ``path``
    (with ``layer_norm_eps`` when it is not MONAI's 1e-5: an encoder imported from MAE / timm)."""
    from ..data.writers import atomic_path

    mae = getattr(mae, "module", mae)
    state = encoder_state_dict(mae.state_dict(), mae.encoder_config["num_layers"])
    config = dict(mae.encoder_config)
    eps = mae.blocks[-1].eps if isinstance(mae.blocks[-1], nn.LayerNorm) else 1e-5
    if eps != 1e-5:  # imported from MAE / timm (1e-6): fine-tuning keeps it
        config["layer_norm_eps"] = float(eps)
    with atomic_path(path) as tmp:
        torch.save({"encoder": state, "config": config}, tmp)
    return path
