"""Stenosis detection networks: MONAI's RetinaNet on a ViTDet-style backbone (a plain ViT, a
simple feature pyramid built from its last block) or on MONAI's ResNet-FPN.

``StenosisRetinaNet`` is ``monai.apps.detection.networks.retinanet_network.RetinaNet`` with one
of two feature extractors, both giving pyramid levels at strides 8, 16 and 32 (the anchors of
``build_detector`` are set per level, so the two backbones share one anchor configuration):

- ``backbone="vit"``: ``ViTSimpleFeaturePyramid`` - MONAI's ``ViT`` (the key layout of a VasoMIM /
  MAE encoder export, loaded strictly) and ViTDet's simple feature pyramid: the stride-16 token grid
  of the last block is upsampled by a transposed conv (stride 8), kept (16) and max-pooled (32),
  each level then 1x1 conv + LayerNorm + 3x3 conv + LayerNorm to ``pyramid_channels``.
- ``backbone="resnet"``: MONAI's ResNet-FPN (``BackboneWithFPN`` on a 2-D ``ResNet`` 18 / 34 / 50, as
  ``resnet_fpn_feature_extractor`` builds it), layers 2 and 3 plus the FPN's max-pool level.

``build_detector`` wraps the network in MONAI's ``RetinaNetDetector`` (anchor generator, box
coder, ATSS matcher, hard negative sampler, box selector). The detector holds no weights; only
the network is trained and saved, as MONAI's detection bundles do.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.networks.blocks.backbone_fpn_utils import BackboneWithFPN
from monai.networks.blocks.feature_pyramid_network import LastLevelMaxPool
from monai.networks.nets import ViT, resnet
from torch import nn
from torch.nn import functional as F

from .checkpoint import records_constructor, update_constructor
from .encoder_export import SIZE_KEYS, vit_sizes
from .foreign_weights import apply_pretrained_encoder
from .unet_adapter import add_drop_path, tokens_to_grid

logger = logging.getLogger(__name__)

BACKBONES = ("vit", "resnet")
PYRAMID_STRIDES = (8, 16, 32)
RESNET_LAYERS = {18: (resnet.ResNetBlock, [2, 2, 2, 2]), 34: (resnet.ResNetBlock, [3, 4, 6, 3]), 50: (resnet.ResNetBottleneck, [3, 4, 6, 3])}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, H, W] map, as ViTDet's pyramid uses (MONAI has no
    channels-first LayerNorm; GroupNorm(1, C) would also normalise over the positions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm, not super().forward: TorchScript cannot call a parent's forward
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


def _level(hidden_size: int, channels: int, scale: float) -> nn.Sequential:
    """Stride-16 token grid -> one pyramid level (ViTDet: resample, then 1x1 + LN, 3x3 + LN)."""
    if scale == 2:
        resample: List[nn.Module] = [nn.ConvTranspose2d(hidden_size, hidden_size // 2, 2, stride=2)]
        width = hidden_size // 2
    elif scale == 1:
        resample, width = [], hidden_size
    elif scale == 0.5:
        resample, width = [nn.MaxPool2d(2, stride=2)], hidden_size
    else:
        raise ValueError(f"a pyramid level resamples the stride-16 grid by 2, 1 or 1/2, not {scale}")
    return nn.Sequential(
        *resample,
        nn.Conv2d(width, channels, 1, bias=False),
        LayerNorm2d(channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        LayerNorm2d(channels),
    )


class ViTSimpleFeaturePyramid(nn.Module):
    """A plain ViT and ViTDet's simple feature pyramid: [B, C, H, W] -> {"8": ..., "16": ..., "32": ...}
    maps of ``out_channels`` channels. The ViT sits under ``vit.`` (the encoder export's layout)."""

    def __init__(self, vit: ViT, hidden_size: int, img_size: int, patch_size: int = 16, out_channels: int = 256):
        super().__init__()
        if patch_size != 16:
            raise ValueError(f"the simple feature pyramid is built from a stride-16 grid (ViTDet): patch_size must be 16, got {patch_size}")
        if img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32 (the coarsest pyramid stride), got {img_size}")
        self.vit = vit
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.level_names = [str(s) for s in PYRAMID_STRIDES]
        self.levels = nn.ModuleList(_level(hidden_size, out_channels, 16 / s) for s in PYRAMID_STRIDES)
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        # written so that TorchScript compiles it (ckpt_export): explicit loops, str.format
        height, width = self.grid_size
        if images.shape[-2] != height * 16 or images.shape[-1] != width * 16:
            raise ValueError("the ViT backbone takes {}x{} frames (its position embedding), got {}x{}".format(height * 16, width * 16, images.shape[-2], images.shape[-1]))
        tokens, _ = self.vit(images)
        grid = tokens_to_grid(tokens, self.grid_size)
        maps: Dict[str, torch.Tensor] = OrderedDict()
        for i, level in enumerate(self.levels):
            maps[self.level_names[i]] = level(grid)
        return maps


@records_constructor
class StenosisRetinaNet(RetinaNet):
    """MONAI's RetinaNet (classification and box-regression heads over a feature pyramid) for 2-D
    frames, on a ViT (VasoMIM-initialisable) or a ResNet-FPN.

    Args:
        backbone: "vit" (ViTDet-style) or "resnet" (MONAI's ResNet-FPN).
        num_classes: foreground classes (1: stenosis).
        num_anchors: anchor shapes per location (the detector's anchor generator must agree).
        img_size: the square training size; the ViT's position embedding is built for it (a
            multiple of 32).
        in_channels: 1 (grey frames).
        preset: ViT size ("vit_s16", "vit_b16" default, "vit_l16"); hidden_size / mlp_dim /
            num_layers / num_heads override it; an encoder export's sizes are adopted.
        patch_size: 16 (the pyramid is built from the stride-16 grid).
        pyramid_channels: channels of every pyramid level and of the heads (256, RetinaNet's).
        drop_path: stochastic depth of the ViT blocks (ViTDet fine-tunes ViT-B with 0.1).
        dropout: dropout in the ViT blocks.
        pretrained_encoder: an ``export_encoder`` file (the VasoMIM bundle's ``models/encoder.pt``),
            an MAE / VasoMIM / timm checkpoint or a Hugging Face ViTMAE / ViT folder
            (``foreign_weights``), loaded strictly (every encoder key, shapes checked; position
            embeddings resized).
        pretrained_format: "auto", "angiokit", "timm" / "mae" or "huggingface".
        layer_norm_eps: the ViT's LayerNorm eps (recorded from an imported checkpoint).
        resnet_depth: 18, 34 or 50 for ``backbone="resnet"``.
    """

    def __init__(
        self,
        backbone: str = "vit",
        num_classes: int = 1,
        num_anchors: int = 3,
        img_size: int = 512,
        in_channels: int = 1,
        preset: str = "vit_b16",
        patch_size: int = 16,
        pyramid_channels: int = 256,
        drop_path: float = 0.1,
        dropout: float = 0.0,
        pretrained_encoder: Optional[str] = None,
        resnet_depth: int = 50,
        qkv_bias: bool = True,
        pretrained_format: str = "auto",
        layer_norm_eps: Optional[float] = None,
        **overrides,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if backbone == "vit":
            cfg = vit_sizes(preset, overrides, pretrained_encoder, pretrained_format)
            vit = ViT(
                in_channels=in_channels, img_size=img_size, patch_size=patch_size, hidden_size=cfg["hidden_size"], mlp_dim=cfg["mlp_dim"],
                num_layers=cfg["num_layers"], num_heads=cfg["num_heads"], proj_type="conv", classification=False, dropout_rate=dropout,
                spatial_dims=2, qkv_bias=qkv_bias,
            )
            add_drop_path(vit.blocks, drop_path)
            extractor: nn.Module = ViTSimpleFeaturePyramid(vit, cfg["hidden_size"], img_size, patch_size, pyramid_channels)
            size_divisible = 32
        else:
            if overrides:
                raise ValueError(f"ViT size arguments {sorted(overrides)} do not apply to backbone='resnet'")
            if resnet_depth not in RESNET_LAYERS:
                raise ValueError(f"resnet_depth must be one of {sorted(RESNET_LAYERS)}, got {resnet_depth}")
            block, layers = RESNET_LAYERS[resnet_depth]
            trunk = resnet.ResNet(
                block=block, layers=layers, block_inplanes=resnet.get_inplanes(), spatial_dims=2, n_input_channels=in_channels,
                conv1_t_stride=2, conv1_t_size=7,
            )
            # layers 2 and 3 (strides 8, 16) + the FPN's max-pool level (32): the ViT's strides.
            # MONAI's BackboneWithFPN as resnet_fpn_feature_extractor builds it, with the width a
            # parameter (that function fixes 256; CPU-size runs use 128 for both backbones)
            returned = {"layer2": "0", "layer3": "1"}
            stage2 = trunk.in_planes // 8
            extractor = BackboneWithFPN(trunk, returned, [stage2 * 2, stage2 * 4], pyramid_channels, spatial_dims=2, extra_blocks=LastLevelMaxPool(2))
            size_divisible = 32
        super().__init__(spatial_dims=2, num_classes=num_classes, num_anchors=num_anchors, feature_extractor=extractor, size_divisible=size_divisible)
        self.backbone = backbone
        if backbone == "vit":
            self.encoder_config = {k: cfg[k] for k in SIZE_KEYS} | {"qkv_bias": qkv_bias, "patch_size": patch_size}
            update_constructor(self, **{k: cfg[k] for k in SIZE_KEYS})
            apply_pretrained_encoder(self, self.vit, layer_norm_eps, pretrained_encoder, pretrained_format, self.encoder_config)

    __jit_unused_properties__ = ["vit"]  # a Python-side accessor; TorchScript need not compile it

    @property
    def vit(self) -> Optional[ViT]:
        """The ViT backbone (None for a ResNet): where ``load_encoder`` and the layer-wise lr decay
        of ``angiokit.optim`` look."""
        return getattr(self.feature_extractor, "vit", None)


class FinestClassificationMap(nn.Module):
    """The detection network's classification logits at its finest level (stride 8):
    [B, num_classes x num_anchors, H / 8, W / 8]. What ``monai.bundle verify_net_in_out`` checks
    (it needs one tensor; the network returns a dict of per-level maps); the bundle's
    ``network_io`` id."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[self.network.cls_key][0]


def anchor_generator(base_anchor_shapes: Sequence[Sequence[float]] = ((32, 32), (24, 44), (44, 24)), levels: int = len(PYRAMID_STRIDES)) -> AnchorGeneratorWithAnchorShape:
    """MONAI's anchor generator: ``base_anchor_shapes`` (pixels, in array-axis order) at the
    stride-8 level, doubled at each coarser level."""
    return AnchorGeneratorWithAnchorShape(feature_map_scales=[2**i for i in range(levels)], base_anchor_shapes=[list(map(float, s)) for s in base_anchor_shapes])


def build_detector(
    network: nn.Module,
    base_anchor_shapes: Sequence[Sequence[float]] = ((32, 32), (24, 44), (44, 24)),
    atss_candidates: int = 4,
    batch_size_per_image: int = 64,
    positive_fraction: float = 0.3,
    score_thresh: float = 0.02,
    nms_thresh: float = 0.22,
    detections_per_img: int = 100,
    topk_candidates_per_level: int = 1000,
) -> RetinaNetDetector:
    """MONAI's ``RetinaNetDetector`` around ``network``: anchors of ``anchor_generator``, ATSS
    matching (``atss_candidates`` per level, centres not required inside the box: stenoses are
    small and thin), hard negative sampling, and the box selector used at inference.

    The settings are those of MONAI's LUNA16 RetinaNet tutorial (``nms_thresh`` 0.22,
    ``score_thresh`` 0.02, 64 sampled anchors per image, 30 % positive): a starting point, not
    tuned on any of our test splits."""
    network = getattr(network, "module", network)  # DDP: the detector reads the network's attributes
    detector = RetinaNetDetector(network=network, anchor_generator=anchor_generator(base_anchor_shapes))
    detector.set_atss_matcher(num_candidates=atss_candidates, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=batch_size_per_image, positive_fraction=positive_fraction, pool_size=20, min_neg=16)
    detector.set_box_selector_parameters(
        score_thresh=score_thresh, topk_candidates_per_level=topk_candidates_per_level, nms_thresh=nms_thresh, detections_per_img=detections_per_img, apply_sigmoid=True
    )
    return detector


__all__ = ["FinestClassificationMap", "StenosisRetinaNet", "ViTSimpleFeaturePyramid", "anchor_generator", "build_detector"]
