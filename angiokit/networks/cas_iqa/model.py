"""The CAS-IQA model: the shared image encoder, the residual encoder, the prompt encoder and MUST
put together (the diagram in ``angiokit.networks.cas_iqa``)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...metrics.correlation import expected_level
from ..checkpoint import records_constructor, update_constructor
from ..encoder_export import SIZE_KEYS, vit_sizes
from .image_encoder import encoder_downsampling, image_vit
from .must import AUX_PATHS, MUST
from .prompts import DEFAULT_PROMPTS
from .residual_encoder import ResidualEncoder, wire_prior
from .text_encoder import ByteTextEncoder


@records_constructor
class CASIQA(nn.Module):
    """Scores synthetic angiograms on prompted metrics.

    Args:
        preset / hidden_size / num_layers / num_heads / mlp_dim: the shared ViT image encoder
            (VasoMIM presets; keywords override).
        img_size: input size (square): the pixel residuals S - aux are compared at this size.
        encoder_size: the ViT's input size (default ``img_size``; a multiple of ``patch_size``
            that divides ``img_size``): frames are area-downsampled to it for the ViT, which
            encodes global content, while the residuals keep every pixel (``ResidualEncoder``
            folds them to the ViT's grid), e.g. 256 / 128 on a CPU: a thin wire's loss is a
            sub-pixel line at 128 px.
        patch_size: 16 (the VasoMIM encoders); smaller patches see thinner wires at small sizes.
            The residuals S - aux are encoded by a small CNN (``ResidualEncoder``) with this
            stride at ``encoder_size``.
        prompts: metric name -> prompt (default: guidewire visibility, branch discernibility,
            artifact interference).
        auxiliary: which auxiliary images are used ("fluoro", "reference"); () = S alone.
        fusion: "must" or "mean" (ablation without MUST).
        pretrained_encoder: a VasoMIM encoder export to start the image encoder from, or an MAE /
            timm checkpoint or Hugging Face ViTMAE / ViT folder (``foreign_weights``).
        pretrained_format: "auto", "angiokit", "timm" / "mae" or "huggingface".
        layer_norm_eps: the image ViT's LayerNorm eps (recorded from an imported checkpoint).
        image_encoder: any module mapping [B, 1, H, W] -> [B, N, D] tokens in place of the ViT
            (e.g. ``HFVisionEncoder``); then ``hidden_size`` must be its D.
        aux_dropout: in training, the chance that a sample's auxiliary image is hidden, so the
            model also learns to score without it (MONAI Label studies may lack them).
    """

    def __init__(
        self,
        preset: str = "vit_b16",
        img_size: int = 224,
        patch_size: int = 16,
        prompts: Optional[Dict[str, str]] = None,
        auxiliary: Sequence[str] = AUX_PATHS,
        fusion: str = "must",
        pretrained_encoder: Optional[str] = None,
        image_encoder: Optional[nn.Module] = None,
        text_layers: int = 2,
        dropout: float = 0.0,
        aux_dropout: float = 0.0,
        encoder_size: Optional[int] = None,
        pretrained_format: str = "auto",
        layer_norm_eps: Optional[float] = None,
        **overrides,
    ):
        super().__init__()
        self.aux_dropout = float(aux_dropout)
        if fusion not in ("must", "mean"):
            raise ValueError(f"fusion must be 'must' or 'mean', got {fusion!r}")
        unknown = set(auxiliary) - set(AUX_PATHS)
        if unknown:
            raise ValueError(f"unknown auxiliary images {sorted(unknown)}; known: {AUX_PATHS}")
        cfg = vit_sizes(preset, overrides, pretrained_encoder, pretrained_format)
        update_constructor(self, **{k: cfg[k] for k in SIZE_KEYS})
        dim, heads = cfg["hidden_size"], cfg["num_heads"]
        self.downsample = encoder_downsampling(img_size, encoder_size)
        if image_encoder is None:
            self.vit = image_vit(cfg, int(img_size) // self.downsample, patch_size, dropout, pretrained_encoder, pretrained_format, self, layer_norm_eps)
            self.image_encoder = None
        else:
            self.vit, self.image_encoder = None, image_encoder
        self.prompts = dict(prompts or DEFAULT_PROMPTS)
        self.metrics = list(self.prompts)
        self.auxiliary, self.fusion = tuple(auxiliary), fusion
        self.residual_encoder = ResidualEncoder(dim, patch_size, unshuffle=self.downsample) if self.auxiliary else None
        self.text = ByteTextEncoder(dim, text_layers, max(1, dim // 64))
        if fusion == "must":
            self.must = MUST(dim, heads, ("self",) + self.auxiliary)
        else:
            self.mean_fusion = nn.Linear(dim * (1 + 2 * len(self.auxiliary)), dim)
        self.head = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 5))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)  # area downsampling to the encoder's size
        if self.image_encoder is not None:
            return self.image_encoder(x)
        tokens, _ = self.vit(x)
        return tokens

    def forward(
        self,
        image: torch.Tensor,
        fluoro: Optional[torch.Tensor] = None,
        reference: Optional[torch.Tensor] = None,
        prompts: Optional[Sequence[str]] = None,
        fluoro_available: Optional[torch.Tensor] = None,
        reference_available: Optional[torch.Tensor] = None,
    ):
        """Logits [B, M, 5] for the metrics' prompts (or the given ``prompts``).

        Auxiliary images the model was not built for are ignored; a missing one (None, or
        ``<name>_available`` False for a sample in a mixed batch) drops its path.
        """
        given = {"fluoro": (fluoro, fluoro_available), "reference": (reference, reference_available)}
        present = [p for p in self.auxiliary if given[p][0] is not None]
        aux_images = [given[p][0] for p in present]
        # one pass; chunk by image count, not split by batch size: a traced export then takes any batch
        tokens = self.encode_image(torch.cat([image] + aux_images)).chunk(1 + len(aux_images))
        s = tokens[0]
        aux = {p: None for p in self.auxiliary}
        aux.update(zip(present, tokens[1:]))
        available = {p: given[p][1] for p in self.auxiliary if given[p][1] is not None}
        if self.training and self.aux_dropout > 0:
            for p in present:
                kept = torch.rand(image.shape[0], device=image.device) >= self.aux_dropout
                available[p] = kept if p not in available else available[p].bool() & kept
        residuals = {}
        if present:
            ones = torch.ones(image.shape[0], dtype=torch.bool, device=image.device)
            keep = {p: available[p].to(image.device).bool() if p in available else ones for p in present}
            shown = {p: img * keep[p][:, None, None, None].to(img.dtype) for p, img in zip(present, aux_images)}  # zero where hidden
            fluoro_shown = shown.get("fluoro", torch.zeros_like(image))
            iodine = torch.zeros_like(image)
            if len(present) == 2:  # C - F where a sample shows both
                iodine = (shown["reference"] - fluoro_shown) * (keep["fluoro"] & keep["reference"])[:, None, None, None].to(image.dtype)
            n = len(present)
            residual_tokens = self.residual_encoder(image.repeat(n, 1, 1, 1), torch.cat(aux_images), iodine.repeat(n, 1, 1, 1), wire_prior(fluoro_shown).repeat(n, 1, 1, 1)).chunk(n)
            residuals = dict(zip(present, residual_tokens))
        queries = self.text(list(prompts) if prompts is not None else [self.prompts[m] for m in self.metrics])
        if self.fusion == "must":
            fused, self.last_path_weights, self.last_token_weights = self.must(s, aux, queries, available, residuals)
        else:
            feats = [s.mean(1)]
            for p in self.auxiliary:
                for t in (aux[p], residuals.get(p)):
                    f = t.mean(1) if t is not None else torch.zeros_like(s[:, 0])
                    if p in available:
                        f = f * available[p].to(f.dtype)[:, None]
                    feats.append(f)
            fused = self.mean_fusion(torch.cat(feats, -1))[:, None].expand(-1, queries.shape[0], -1)
        q = queries[None].expand(fused.shape[0], -1, -1)
        return self.head(torch.cat([fused, q], -1))

    @staticmethod
    def scores(logits: torch.Tensor) -> torch.Tensor:
        """Expected level (1-5) per metric: [B, M]."""
        return expected_level(logits)
