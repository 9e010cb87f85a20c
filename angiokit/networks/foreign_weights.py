"""Pre-trained ViT weights in and out: official VasoMIM / MAE / timm checkpoints and Hugging Face
``ViTMAEModel`` / ``ViTModel`` into our MONAI ViTs, and our encoders out to timm and Hugging Face.

Layouts read (``format``; "auto" tells them apart by their keys):

    "angiokit"     ``export_encoder`` files ({"encoder": MONAI ViT keys, "config": sizes})
    "timm"         MAE / VasoMIM / timm ``VisionTransformer``: ``patch_embed.proj``, ``cls_token``,
                   ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
                   ``norm``; bare or under ``model`` / ``state_dict`` (MAE's training
                   checkpoints), ``module.`` stripped; MAE's ``decoder_*`` / ``mask_token`` and
                   classification heads are not encoder keys (they go to ``VasoMIM``'s decoder)
    "huggingface"  ``ViTMAEModel`` / ``ViTModel`` (a ``save_pretrained`` folder or a weights file;
                   transformers 5 names ``layers.N.attention.{q,k,v,o}_proj`` and the older
                   ``encoder.layer.N.attention.attention.{query,key,value}``), ``vit.`` stripped

What differs is converted:

- a 3-channel patch embedding becomes 1-channel with the checkpoint's input normalisation folded
  in: it saw x_c = (g - mean_c) / std_c of a grey frame g, so W = sum_c W_c / std_c and
  b' = b - sum_c mean_c / std_c * sum(W_c) - a grey frame in [0, 1] here gives the features the
  checkpoint gives its normalised 3-channel copy (mean / std: the Hugging Face folder's
  ``preprocessor_config.json``, else ImageNet's, MAE's and the official VasoMIM's);
- position embeddings are resampled to the network's grid as timm's ``resample_abs_pos_embed``
  does (bicubic, antialiased); the class token's position is folded into the class token where
  the network has one (``VasoMIM``) and dropped with the class token where it has none (our
  segmenters, detector and IQA encoders: patch tokens only, as ViTDet fine-tunes MAE encoders);
- Hugging Face's separate q / k / v projections are fused into one ``qkv`` (and split on export);
- LayerNorm eps: timm / MAE use 1e-6, Hugging Face its config's (1e-12 by default), MONAI 1e-5;
  the network's LayerNorms take the checkpoint's eps (``set_layer_norm_eps``) and the networks
  record it as ``layer_norm_eps`` in the checkpoints they write.

Loading is strict over encoder keys: a missing, unexpected or shape-mismatched key raises
``EncoderKeyError`` naming the file and the keys; an unknown layout names the file and some of
its keys. ``timm`` / ``transformers`` are imported by the export functions only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .encoder_export import EncoderKeyError, resize_position_embeddings

logger = logging.getLogger(__name__)

FORMATS = ("auto", "angiokit", "timm", "mae", "huggingface")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_EPS = 1e-6  # timm's and MAE's LayerNorm (partial(nn.LayerNorm, eps=1e-6))
MONAI_EPS = 1e-5  # nn.LayerNorm's default, MONAI's ViT
# heads per width where the width is not 64 per head (ViT-H/14: 1280 wide, 16 heads of 80)
HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16}

TIMM_BLOCK = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.out_proj", "norm2": "norm2", "mlp.fc1": "mlp.linear1", "mlp.fc2": "mlp.linear2"}
HF_BLOCK = {
    # transformers 5
    "layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.out_proj", "mlp.fc1": "mlp.linear1", "mlp.fc2": "mlp.linear2",
    # transformers 4 (the released checkpoints' names)
    "attention.output.dense": "attn.out_proj", "intermediate.dense": "mlp.linear1", "output.dense": "mlp.linear2",
}
HF_QKV = {"q": ("attention.q_proj", "attention.attention.query"), "k": ("attention.k_proj", "attention.attention.key"), "v": ("attention.v_proj", "attention.attention.value")}
NOT_ENCODER = re.compile(r"^(decoder[._]|mask_token|head\.|head_drop|fc_norm\.|pooler\.|classifier\.)")


@dataclass
class ImportReport:
    """What ``load_pretrained_encoder`` did: the layout read, the keys it set, the checkpoint keys
    that are not encoder keys (decoder, heads; ``ignored``), and the conversions applied."""

    path: str
    format: str
    loaded: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    conversions: List[str] = field(default_factory=list)
    layer_norm_eps: Optional[float] = None


# ---- reading ---------------------------------------------------------------------------------


def _torch_load(path: str):
    # MAE's training checkpoints carry their argparse Namespace ("args"): allowed, nothing else
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """(flat state dict, metadata) of a checkpoint file or a Hugging Face folder; metadata holds
    the folder's ``config`` and ``preprocessor`` (image_mean / image_std) or an angiokit export's
    ``config``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: pre-trained encoder not found")
    meta: Dict = {}
    if os.path.isdir(path):
        for name, key in (("config.json", "config"), ("preprocessor_config.json", "preprocessor")):
            if os.path.isfile(os.path.join(path, name)):
                with open(os.path.join(path, name)) as f:
                    meta[key] = json.load(f)
        weights = [n for n in ("model.safetensors", "pytorch_model.bin") if os.path.isfile(os.path.join(path, n))]
        if not weights:
            raise EncoderKeyError(f"{path}: a folder without model.safetensors or pytorch_model.bin (not a Hugging Face save_pretrained folder)")
        state, _ = read_checkpoint(os.path.join(path, weights[0]))
        meta["format"] = "huggingface"
        return state, meta
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = dict(load_file(path))
    else:
        state = None
    sidecar = path + ".json"  # export_timm's create_model arguments: heads and LayerNorm eps
    if os.path.isfile(sidecar):
        with open(sidecar) as f:
            kwargs = json.load(f)
        meta["config"] = {"num_attention_heads": kwargs.get("num_heads"), "layer_norm_eps": kwargs.get("layer_norm_eps")}
        meta["config"] = {k: v for k, v in meta["config"].items() if v is not None}
    if state is not None:
        return state, meta
    try:
        obj = _torch_load(path)
    except Exception as e:  # noqa: BLE001 - say which file
        raise EncoderKeyError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    if isinstance(obj, dict) and "encoder" in obj and isinstance(obj.get("config"), dict):
        meta = {}
        meta["config"], meta["format"] = dict(obj["config"]), "angiokit"
        return dict(obj["encoder"]), meta
    for wrapper in ("model", "state_dict", "model_state", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EncoderKeyError(f"{path}: no state dict found (keys {list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__})")
    state = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        state[k] = v
    return state, meta


def detect_format(state: Dict[str, torch.Tensor], path: str = "") -> str:
    """"angiokit", "timm" (MAE / VasoMIM / timm) or "huggingface", from the keys."""
    keys = list(state)
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        return "huggingface"
    if "patch_embed.proj.weight" in state:
        return "timm"
    if any(k.endswith("patch_embedding.patch_embeddings.weight") for k in keys):
        return "angiokit"
    raise EncoderKeyError(
        f"{path}: unknown checkpoint layout (not an angiokit encoder export, MAE / timm ViT or Hugging Face ViT / ViTMAE); "
        f"{len(keys)} keys, e.g. {keys[:8]}"
    )


class _Tracked(dict):
    """A dict that notes, in ``origin``, the checkpoint key (``source``) each key came from."""

    def __init__(self, origin):
        super().__init__()
        self.origin, self.source = (origin if origin is not None else {}), None

    def __setitem__(self, key, value):
        self.origin[key] = self.source
        super().__setitem__(key, value)


# ---- foreign layouts -> one canonical encoder state -----------------------------------------------
# canonical: MONAI ViT keys (patch_embedding.*, blocks.N.*, norm.*), position embeddings of the
# patch grid only; "cls_token" (+ its position) kept aside; patch weights not yet folded.


def _from_timm(state: Dict[str, torch.Tensor], origin: Optional[Dict[str, str]] = None) -> Tuple[Dict, Dict, List[str], Dict]:
    out, extra, ignored, unknown = _Tracked(origin), {}, [], {}
    for k, v in state.items():
        out.source = k
        m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if k == "patch_embed.proj.weight" or k == "patch_embed.proj.bias":
            out["patch_embedding.patch_embeddings." + k.rsplit(".", 1)[1]] = v
        elif k == "pos_embed":
            extra["pos_embed"] = v
        elif k == "cls_token":
            extra["cls_token"] = v
        elif k in ("norm.weight", "norm.bias"):
            out[k] = v
        elif m and m.group(2) in TIMM_BLOCK:
            out[f"blocks.{m.group(1)}.{TIMM_BLOCK[m.group(2)]}.{m.group(3)}"] = v
        elif NOT_ENCODER.match(k):
            ignored.append(k)
        else:
            unknown[k] = v
    return dict(out), extra, ignored, unknown


def _from_hf(state: Dict[str, torch.Tensor], origin: Optional[Dict[str, str]] = None) -> Tuple[Dict, Dict, List[str], Dict]:
    out, extra, ignored, unknown = _Tracked(origin), {}, [], {}
    qkv: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    names: Dict[Tuple[str, str], str] = {}
    for k, v in state.items():
        out.source = k
        k2 = k[len("vit."):] if k.startswith("vit.") else k
        k2 = k2[len("encoder."):] if k2.startswith("encoder.layer.") else k2
        m = re.match(r"^(?:layers|layer)\.(\d+)\.(.+)\.(weight|bias)$", k2)
        if k2 == "embeddings.cls_token":
            extra["cls_token"] = v
        elif k2 == "embeddings.position_embeddings":
            extra["pos_embed"] = v
        elif k2.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embedding.patch_embeddings." + k2.rsplit(".", 1)[1]] = v
        elif k2 in ("layernorm.weight", "layernorm.bias"):
            out["norm." + k2.rsplit(".", 1)[1]] = v
        elif m and m.group(2) in HF_BLOCK:
            out[f"blocks.{m.group(1)}.{HF_BLOCK[m.group(2)]}.{m.group(3)}"] = v
        elif m and any(m.group(2) in names for names in HF_QKV.values()):
            which = next(p for p, names in HF_QKV.items() if m.group(2) in names)
            qkv.setdefault((m.group(1), m.group(3)), {})[which] = v
            names[(m.group(1), m.group(3))] = k
        elif NOT_ENCODER.match(k2) or k2.startswith("decoder"):
            ignored.append(k)
        else:
            unknown[k] = v
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            unknown.update({f"layers.{i}.attention.{p}_proj.{kind}": t for p, t in parts.items()})
            continue
        out.source = names[(i, kind)]
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)  # rows: q, k, v; heads within
    return dict(out), extra, ignored, unknown


def fold_normalisation(weight: torch.Tensor, bias: Optional[torch.Tensor], mean: Sequence[float], std: Sequence[float]):
    """[D, 3, p, p] patch weights of normalised colour input -> [D, 1, p, p] weights (and bias)
    of a grey frame: conv(W, (g - m) / s) = conv(sum_c W_c / s_c, g) - sum_c m_c / s_c sum(W_c)."""
    mean = torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    w = weight.double()
    folded = (w / std).sum(1, keepdim=True)
    shift = (w * mean / std).sum((1, 2, 3))
    b = (bias.double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)) - shift
    return folded.to(weight.dtype), b.to(weight.dtype)


def checkpoint_sizes(path: str, format: str = "auto") -> Dict[str, int]:
    """The ViT sizes (hidden_size, mlp_dim, num_layers, num_heads) a checkpoint holds, so a
    network built from it needs no preset (heads: the Hugging Face config's, the angiokit export's,
    else 64 channels a head but for ViT-H's 1280 / 16)."""
    state, meta = read_checkpoint(path)
    fmt = _resolve(format, state, meta, path)
    if fmt == "angiokit":
        config = meta.get("config", {})
        return {k: config[k] for k in ("hidden_size", "mlp_dim", "num_layers", "num_heads") if k in config}
    enc, _, _, _ = (_from_hf if fmt == "huggingface" else _from_timm)(state)
    w = enc.get("patch_embedding.patch_embeddings.weight")
    if w is None:
        raise EncoderKeyError(f"{path}: no patch embedding weight in a {fmt}-layout checkpoint")
    width = int(w.shape[0])
    layers = sorted({int(k.split(".")[1]) for k in enc if k.startswith("blocks.")})
    fc1 = enc.get("blocks.0.mlp.linear1.weight")
    heads = meta.get("config", {}).get("num_attention_heads") or HEADS.get(width, max(width // 64, 1))
    sizes = {"hidden_size": width, "num_layers": len(layers), "num_heads": int(heads)}
    if fc1 is not None:
        sizes["mlp_dim"] = int(fc1.shape[0])
    return sizes


def _resolve(format: str, state, meta, path) -> str:
    if format not in FORMATS:
        raise ValueError(f"pretrained_format must be one of {FORMATS}, got {format!r}")
    if format == "auto":
        return meta.get("format") or detect_format(state, path)
    return "timm" if format == "mae" else format


# ---- loading into our networks ----------------------------------------------------------------


def _target_vit(network: nn.Module) -> nn.Module:
    vit = getattr(network, "vit", None)
    return vit if isinstance(vit, nn.Module) else network


def set_layer_norm_eps(module: nn.Module, eps: float) -> nn.Module:
    """Set ``eps`` on every LayerNorm of ``module`` (a ViT's blocks and final norm)."""
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = float(eps)
    return module


def apply_pretrained_encoder(network: nn.Module, vit: nn.Module, layer_norm_eps: Optional[float], pretrained_encoder: Optional[str], pretrained_format: str = "auto", expected: Optional[Dict] = None) -> None:
    """What every network's constructor does with a pre-trained encoder: set ``layer_norm_eps``
    (a network rebuilt from its checkpoint), load ``pretrained_encoder`` (any layout), and record
    the ViT's LayerNorm eps in the constructor when it is not MONAI's (a checkpoint keeps it)."""
    from .checkpoint import update_constructor

    if layer_norm_eps is not None:
        set_layer_norm_eps(vit, layer_norm_eps)
    if pretrained_encoder:
        load_pretrained_encoder(vit, pretrained_encoder, pretrained_format, expected=expected)
        logger.info(f"loaded pre-trained encoder from {pretrained_encoder}")
    norms = [m for m in vit.modules() if isinstance(m, nn.LayerNorm)]
    if norms and norms[-1].eps != MONAI_EPS:
        update_constructor(network, layer_norm_eps=float(norms[-1].eps))


def _is_mae(vit: nn.Module) -> bool:
    return hasattr(vit, "decoder_blocks") and hasattr(vit, "mask_tokens")


def _mae_decoder(state: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor], grid, conversions: List[str]) -> Dict[str, torch.Tensor]:
    """MAE's decoder keys -> MONAI ``MaskedAutoEncoderViT``'s (for ``VasoMIM``)."""
    out = {}
    last = max(int(k.split(".")[1]) for k in target if k.startswith("decoder_blocks.")) if any(k.startswith("decoder_blocks.") for k in target) else -1
    for k, v in state.items():
        m = re.match(r"^decoder_blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if k in ("decoder_embed.weight", "decoder_embed.bias"):
            out[k] = v
        elif k == "mask_token":
            out["mask_tokens"] = v
        elif k == "decoder_pos_embed":
            out["decoder_pos_embedding"] = resize_position_embeddings(v[:, v.shape[1] - (int(round((v.shape[1] - 1) ** 0.5)) ** 2):], grid, antialias=True)
        elif k.startswith("decoder_norm."):
            out[f"decoder_blocks.{last}.{k.rsplit('.', 1)[1]}"] = v
        elif m and m.group(2) in TIMM_BLOCK:
            out[f"decoder_blocks.{m.group(1)}.{TIMM_BLOCK[m.group(2)]}.{m.group(3)}"] = v
        elif k.startswith("decoder_pred."):
            want = target.get(k)
            if want is not None and v.shape[0] != want.shape[0] and v.shape[0] % want.shape[0] == 0:
                # MAE predicts (p, p, 3) colour pixels; a grey decoder predicts their mean
                c = v.shape[0] // want.shape[0]
                v = v.reshape(want.shape[0], c, *v.shape[1:]).mean(1)
                conversions.append(f"decoder_pred: mean of the {c} colour outputs")
            out[k] = v
    return out


def load_pretrained_encoder(
    network: nn.Module,
    path: str,
    format: str = "auto",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    layer_norm_eps: Optional[float] = None,
    expected: Optional[Dict] = None,
) -> ImportReport:
    """Load the ViT encoder of the checkpoint at ``path`` into ``network``: a MONAI ``ViT``, a
    network holding one as ``.vit`` (``ViTSegmenter``, ``StenosisRetinaNet``, ``ViTRegressor``),
    or ``VasoMIM`` (class token and, from an MAE checkpoint, the decoder too).

    ``format``: "auto" (default), "angiokit", "timm" / "mae" or "huggingface". ``mean`` / ``std``:
    the colour normalisation a 3-channel checkpoint was trained with (default: a Hugging Face
    folder's, else ImageNet's). ``layer_norm_eps``: the checkpoint's LayerNorm eps (default: the
    layout's). Strict over encoder keys (``EncoderKeyError`` naming the file and the keys).
    """
    state, meta = read_checkpoint(path)
    fmt = _resolve(format, state, meta, path)
    report = ImportReport(path=path, format=fmt)
    vit = _target_vit(network)
    if fmt == "angiokit":
        from .encoder_export import load_encoder_file

        if _is_mae(vit):
            raise EncoderKeyError(f"{path}: an angiokit encoder export holds no decoder; continue pre-training with the bundle's resume_from")
        load_encoder_file(network, path, expected)
        report.loaded = sorted(state)
        eps = meta.get("config", {}).get("layer_norm_eps")
        if eps is not None:
            set_layer_norm_eps(vit, eps)
            report.layer_norm_eps = float(eps)
        return report

    origin: Dict[str, str] = {}
    enc, extra, ignored, unknown = (_from_hf if fmt == "huggingface" else _from_timm)(state, origin)
    report.ignored = sorted(ignored)
    target = vit.state_dict()
    mae = _is_mae(vit)
    depth = len(vit.blocks) - 1 if mae else len(vit.blocks)
    if mae:  # MONAI's MaskedAutoEncoderViT keeps the final norm as the last entry of ``blocks``
        enc = {(f"blocks.{depth}." + k[5:] if k.startswith("norm.") else k): v for k, v in enc.items()}
        origin.update({f"blocks.{depth}.{p}": origin.get(f"norm.{p}") for p in ("weight", "bias")})
    side = int(round(int(vit.patch_embedding.n_patches) ** 0.5))
    grid = (side, side)

    # patch embedding: fold the colour normalisation into a grey one
    wkey, bkey = "patch_embedding.patch_embeddings.weight", "patch_embedding.patch_embeddings.bias"
    if wkey in enc and wkey in target and enc[wkey].ndim == 4 and enc[wkey].shape[1] != target[wkey].shape[1]:
        cin, want = enc[wkey].shape[1], target[wkey].shape[1]
        if want == 1:
            if mean is None:
                mean = meta.get("preprocessor", {}).get("image_mean", IMAGENET_MEAN)
            if std is None:
                std = meta.get("preprocessor", {}).get("image_std", IMAGENET_STD)
            if len(mean) != cin or len(std) != cin:
                raise EncoderKeyError(f"{path}: a {cin}-channel patch embedding and a normalisation of {len(mean)} means / {len(std)} stds")
            enc[wkey], enc[bkey] = fold_normalisation(enc[wkey], enc.get(bkey), mean, std)
            report.conversions.append(f"patch embedding {cin} -> 1 channel, normalisation mean={list(mean)} std={list(std)} folded in")

    # position embeddings: the patch grid's, resampled; the class token's position goes with the class token
    if "pos_embed" in extra:
        pos = extra["pos_embed"]
        prefix = 1 if "cls_token" in extra else 0
        if pos.shape[1] - prefix != int(round((pos.shape[1] - prefix) ** 0.5)) ** 2:
            raise EncoderKeyError(f"{path}: pos_embed {tuple(pos.shape)} is not a square patch grid after {prefix} prefix token(s)")
        patch_pos = pos[:, prefix:]
        new = resize_position_embeddings(patch_pos, grid, antialias=True)
        if new.shape[1] != patch_pos.shape[1]:
            side = int(round(patch_pos.shape[1] ** 0.5))
            report.conversions.append(f"position embeddings {side}x{side} -> {grid[0]}x{grid[1]} (bicubic, antialias, as timm)")
        enc["patch_embedding.position_embeddings"] = new
        origin["patch_embedding.position_embeddings"] = "pos_embed" if fmt == "timm" else "embeddings.position_embeddings"
        if prefix and "cls_token" in extra:
            extra["cls_token"] = extra["cls_token"] + pos[:, :1]
    if "cls_token" in extra:
        if "cls_token" in target:
            enc["cls_token"] = extra["cls_token"]
        else:
            report.conversions.append("class token dropped (the network has patch tokens only)")
    if mae:
        enc.update(_mae_decoder(state, target, grid, report.conversions))

    # strict over encoder keys; the unused cross-attention norms of MONAI's blocks keep their init
    is_encoder = re.compile(r"^(patch_embedding\.|blocks\.|norm\.|cls_token$)")
    wanted = {k for k in target if is_encoder.match(k) and ".norm_cross_attn." not in k}
    missing = sorted(wanted - set(enc))
    unexpected = sorted(set(unknown) | (set(enc) - set(target)))
    shapes = [f"{origin.get(k) or k} {tuple(state[origin[k]].shape) if origin.get(k) in state else tuple(enc[k].shape)} (the network's {k} is {tuple(target[k].shape)})" for k in enc if k in target and enc[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        width = enc.get(wkey)
        sizes = ""
        if width is not None and wkey in target and width.shape[0] != target[wkey].shape[0]:
            sizes = f"hidden size {width.shape[0]} in the checkpoint, {target[wkey].shape[0]} in the network; "
        raise EncoderKeyError(
            f"{path}: the {fmt}-layout encoder does not fit {type(vit).__name__}: {sizes}shape mismatches {shapes[:4]}{'...' if len(shapes) > 4 else ''}; "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''} ({len(missing)}); unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''} ({len(unexpected)}). "
            "(sizes: preset / hidden_size / num_layers / num_heads / mlp_dim of the network; patch size and channels of the checkpoint)"
        )
    vit.load_state_dict({k: v.to(target[k].dtype) for k, v in enc.items()}, strict=False)
    eps = layer_norm_eps
    if eps is None:
        eps = meta.get("config", {}).get("layer_norm_eps", 1e-12 if fmt == "huggingface" else TIMM_EPS)
    set_layer_norm_eps(vit.blocks if not mae else vit, eps)
    if not mae:
        set_layer_norm_eps(vit.norm, eps)
    report.layer_norm_eps = float(eps)
    report.loaded = sorted(enc)
    logger.info(f"{path}: {fmt} layout, {len(enc)} tensors loaded, {len(report.ignored)} non-encoder keys ignored; {'; '.join(report.conversions) or 'no conversion'}; LayerNorm eps {eps}")
    return report


def _img_size(vit: nn.Module):
    n = int(vit.patch_embedding.n_patches)
    side = int(round(n ** 0.5))
    p = vit.patch_embedding.patch_embeddings.kernel_size[0]
    return side * p


# ---- export -------------------------------------------------------------------------------------


def _encoder_of(source) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """(MONAI ViT encoder state with the final norm as ``norm.*``, sizes) of an ``export_encoder``
    file, a VasoMIM, a ViT or a network with ``.vit``."""
    from .encoder_export import encoder_state_dict, vit_config

    if isinstance(source, str):
        state, meta = read_checkpoint(source)
        if meta.get("format") != "angiokit":
            raise ValueError(f"{source}: export takes an angiokit encoder export (export_encoder) or a network")
        config = dict(meta["config"])
        state = {k: v for k, v in state.items() if ".norm_cross_attn." not in k}
        eps = config.get("layer_norm_eps", MONAI_EPS)
        return state, {**config, "layer_norm_eps": eps}
    source = getattr(source, "module", source)
    if _is_mae(source):
        state = encoder_state_dict(source.state_dict(), source.encoder_config["num_layers"])
        config = dict(source.encoder_config)
        config["layer_norm_eps"] = source.blocks[-1].eps
        config["patch_size"] = int(source.patch_embedding.patch_embeddings.kernel_size[0])
        config["img_size"] = _img_size(source)
    else:
        vit = _target_vit(source)
        state = {k: v for k, v in vit.state_dict().items() if re.match(r"^(patch_embedding\.|blocks\.|norm\.|cls_token$)", k)}
        config = vit_config(vit)
        config["layer_norm_eps"] = vit.norm.eps
        config["patch_size"] = int(vit.patch_embedding.patch_embeddings.kernel_size[0])
        config["img_size"] = _img_size(vit)
        config["qkv_bias"] = "blocks.0.attn.qkv.bias" in state
    state = {k: v.detach().clone() for k, v in state.items() if ".norm_cross_attn." not in k}
    return state, config


def timm_state_dict(source) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """(timm ``VisionTransformer`` state dict, ``timm.create_model`` keyword arguments) of our
    encoder: ``source`` an ``export_encoder`` file or a network."""
    state, config = _encoder_of(source)
    out = {}
    inverse = {v: k for k, v in TIMM_BLOCK.items()}
    for k, v in state.items():
        m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if k.startswith("patch_embedding.patch_embeddings."):
            out["patch_embed.proj." + k.rsplit(".", 1)[1]] = v
        elif k == "patch_embedding.position_embeddings":
            out["pos_embed"] = v
        elif m and m.group(2) in inverse:
            out[f"blocks.{m.group(1)}.{inverse[m.group(2)]}.{m.group(3)}"] = v
        elif k.startswith("norm.") or k == "cls_token":
            out[k] = v
    has_cls = "cls_token" in out
    if has_cls:  # our class token carries no position of its own (MAE's is zero)
        out["pos_embed"] = torch.cat([torch.zeros_like(out["pos_embed"][:, :1]), out["pos_embed"]], 1)
    kwargs = dict(
        img_size=config["img_size"], patch_size=config["patch_size"], in_chans=int(out["patch_embed.proj.weight"].shape[1]),
        embed_dim=config["hidden_size"], depth=config["num_layers"], num_heads=config["num_heads"], mlp_ratio=config["mlp_dim"] / config["hidden_size"],
        qkv_bias=bool(config.get("qkv_bias", True)), class_token=has_cls, global_pool="token" if has_cls else "avg", fc_norm=False, num_classes=0, layer_norm_eps=config["layer_norm_eps"],
    )
    return out, kwargs


def export_timm(source, path: str) -> Dict:
    """Write our encoder (``source``: an ``export_encoder`` file or a network) as a timm
    ``VisionTransformer`` state dict (``.safetensors`` or torch file) and the ``create_model``
    arguments beside it (``PATH.json``); returns them. Load it with

        kwargs = json.load(open(PATH + ".json")); eps = kwargs.pop("layer_norm_eps")
        model = timm.create_model("vit_base_patch16_224", pretrained=False,
                                  norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps), **kwargs)
        model.load_state_dict(safetensors.torch.load_file(PATH))

    An encoder without class token (a fine-tuned segmenter's) becomes ``class_token=False,
    global_pool="avg"``: the same features, token for token."""
    import timm  # noqa: F401 - the target of the export: fail here, not at the user's load

    from ..data.writers import atomic_path

    state, kwargs = timm_state_dict(source)
    state = {k: v.contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"format": "pt"})
        else:
            torch.save(state, tmp)
    with atomic_path(path + ".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(kwargs, f, indent=1)
    return kwargs


def export_huggingface(source, folder: str) -> str:
    """Write our encoder as a Hugging Face ``ViTModel`` folder (``save_pretrained``: config.json
    + model.safetensors), for ``transformers.ViTModel.from_pretrained(folder)``; its
    ``last_hidden_state`` holds the class token then the patch tokens. ViTModel always has a class
    token: an encoder without one (a fine-tuned segmenter's) gets a zero one, which the patch
    tokens then attend to (a warning says so: the features are no longer ours)."""
    from transformers import ViTConfig, ViTModel

    state, config = _encoder_of(source)
    if "cls_token" not in state:
        logger.warning("export_huggingface: the encoder has no class token; ViTModel's zero one changes the patch tokens' features")
    cfg = ViTConfig(
        hidden_size=config["hidden_size"], num_hidden_layers=config["num_layers"], num_attention_heads=config["num_heads"],
        intermediate_size=config["mlp_dim"], hidden_act="gelu", image_size=config["img_size"], patch_size=config["patch_size"],
        num_channels=int(state["patch_embedding.patch_embeddings.weight"].shape[1]), qkv_bias=bool(config.get("qkv_bias", True)),
        layer_norm_eps=config["layer_norm_eps"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = ViTModel(cfg, add_pooling_layer=False)
    target = model.state_dict()
    hf = {}
    d = config["hidden_size"]
    pos = state["patch_embedding.position_embeddings"]
    cls = state.get("cls_token", torch.zeros(1, 1, d))
    hf["embeddings.cls_token"] = cls
    hf["embeddings.position_embeddings"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)
    # the names of the installed transformers (5: layers.N.attention.q_proj ...; 4: encoder.layer.N ...)
    new_names = any(k.startswith("layers.") for k in target)
    for k, v in state.items():
        m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", k)
        if k.startswith("patch_embedding.patch_embeddings."):
            hf["embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("norm."):
            hf["layernorm." + k.rsplit(".", 1)[1]] = v
        elif m:
            i, name, kind = m.groups()
            base = f"layers.{i}." if new_names else f"encoder.layer.{i}."
            if name == "attn.qkv":
                for part, t in zip("qkv", v.chunk(3, 0)):
                    hf[base + HF_QKV[part][0 if new_names else 1] + "." + kind] = t
            else:
                names = {"norm1": "layernorm_before", "norm2": "layernorm_after"}
                names.update({"attn.out_proj": "attention.o_proj", "mlp.linear1": "mlp.fc1", "mlp.linear2": "mlp.fc2"} if new_names else {"attn.out_proj": "attention.output.dense", "mlp.linear1": "intermediate.dense", "mlp.linear2": "output.dense"})
                hf[base + names[name] + "." + kind] = v
    missing, unexpected = set(target) - set(hf), set(hf) - set(target)
    if missing or unexpected:
        raise EncoderKeyError(f"Hugging Face export: missing {sorted(missing)[:6]}, unexpected {sorted(unexpected)[:6]} (transformers {__import__('transformers').__version__})")
    model.load_state_dict(hf, strict=True)
    model.save_pretrained(folder)
    return folder


__all__ = [
    "FORMATS",
    "ImportReport",
    "checkpoint_sizes",
    "detect_format",
    "export_huggingface",
    "export_timm",
    "fold_normalisation",
    "load_pretrained_encoder",
    "read_checkpoint",
    "set_layer_norm_eps",
    "timm_state_dict",
]
