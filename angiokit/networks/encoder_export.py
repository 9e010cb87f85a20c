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


def export_encoder(mae: nn.Module, path: str) -> str:
    """Write {"encoder": ViT-layout state dict, "config": ViT constructor arguments} to ``path``."""
    from ..data.writers import atomic_path

    mae = getattr(mae, "module", mae)
    state = encoder_state_dict(mae.state_dict(), mae.encoder_config["num_layers"])
    with atomic_path(path) as tmp:
        torch.save({"encoder": state, "config": dict(mae.encoder_config)}, tmp)
    return path
