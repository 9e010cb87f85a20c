"""Vessel segmenters: a ViT encoder (S/B/L presets, VasoMIM-initialisable) with a UNETR decoder
or CheXWorld's UNet adapter (``decoder="unet_adapter"``, ``angiokit.networks.unet_adapter``), and
the layer-wise learning-rate decay used to fine-tune it.

MONAI's ``UNETR`` fixes the encoder at 12 blocks and taps blocks 3, 6 and 9 for its skip
connections; ``ViTSegmenter`` is a ``UNETR`` whose encoder depth follows the preset (24 blocks
for ViT-L) with the taps at 1/4, 1/2 and 3/4 of the depth (3, 6, 9 for 12 blocks, as UNETR).
Its ViT sits under ``vit.``, the key layout ``load_encoder`` fills.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
from monai.networks import nets
from monai.networks.nets import UNETR, ViT

from ..optim import param_groups
from ..transforms.intensity_order import InputTransform
from .checkpoint import records_constructor, update_constructor
from .encoder_export import SIZE_KEYS, vit_sizes
from .foreign_weights import apply_pretrained_encoder
from .unet_adapter import UNetAdapter, add_drop_path, check_sizes, tokens_to_grid
from .vasomim import freeze_unused_cross_attention

logger = logging.getLogger(__name__)

DECODERS = ("unetr", "unet_adapter")


@records_constructor
class ViTSegmenter(UNETR):
    """ViT encoder + UNETR decoder (or UNet adapter) for 2-D frames; returns logits [B, out_channels, H, W].

    Args:
        preset: "vit_s16", "vit_b16" (default) or "vit_l16"; hidden_size / mlp_dim / num_layers /
            num_heads override it (tiny test models).
        out_channels: classes including background (2 for vessel vs background).
        img_size: training size (square, multiple of 16, and of ``patch_size``).
        feature_size: decoder width: UNETR's feature size (default 16), the adapter's base
            channels C (default 32, CheXWorld's: levels of C, 2C, 4C, 8C, 16C channels).
        norm_name: decoder norm (default "instance" for UNETR, "batch" for the adapter).
        dropout: dropout in the encoder blocks (MONAI Label's MC-dropout scoring sets it).
        pretrained_encoder: a file written by ``angiokit.networks.export_encoder`` (the VasoMIM
            bundle's ``models/encoder.pt``), or an MAE / VasoMIM / timm checkpoint, or a Hugging
            Face ViTMAE / ViT folder (``angiokit.networks.foreign_weights``); loaded strictly,
            position embeddings resized when the size differs, sizes adopted.
        pretrained_format: "auto" (from the keys), "angiokit", "timm" / "mae" or "huggingface".
        layer_norm_eps: the encoder's LayerNorm eps (recorded from an imported checkpoint:
            timm / MAE 1e-6; None: MONAI's 1e-5).
        decoder: "unetr" (default) or "unet_adapter" (CheXWorld / VasoMIM's segmentation decoder:
            a four-level pyramid from the last block, decoded UNet-style).
        patch_size: 16; the adapter also takes 8 (CheXWorld's choice for segmentation), 4 or 32.
        drop_path: stochastic depth of the encoder blocks, rising linearly to this rate at the
            last block (0: none, as before; the recipe fine-tunes with 0.1).
        input_transform: "none" (default), "local_intensity_order" (LIOT: 4 channels per frame
            channel go to the encoder) or "local_contrast"
            (``angiokit.transforms.intensity_order``); the network's first, weightless layer, so
            every user of the checkpoint applies it.
    """

    def __init__(
        self,
        preset: str = "vit_b16",
        in_channels: int = 1,
        out_channels: int = 2,
        img_size: int = 224,
        feature_size: Optional[int] = None,
        dropout: float = 0.0,
        pretrained_encoder: Optional[str] = None,
        norm_name: Optional[str] = None,
        res_block: bool = True,
        qkv_bias: bool = True,
        decoder: str = "unetr",
        patch_size: int = 16,
        drop_path: float = 0.0,
        pretrained_format: str = "auto",
        layer_norm_eps: Optional[float] = None,
        input_transform: str = "none",
        **overrides,
    ):
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        cfg = vit_sizes(preset, overrides, pretrained_encoder, pretrained_format)
        depth = cfg["num_layers"]
        first = InputTransform(input_transform)
        frame_channels, in_channels = in_channels, first.channels(in_channels)
        vit_args = dict(
            in_channels=in_channels, img_size=img_size, patch_size=patch_size, hidden_size=cfg["hidden_size"], mlp_dim=cfg["mlp_dim"],
            num_layers=depth, num_heads=cfg["num_heads"], proj_type="conv", classification=False, dropout_rate=dropout, spatial_dims=2, qkv_bias=qkv_bias,
        )
        if decoder == "unetr":
            if patch_size != 16:
                raise ValueError(f"the UNETR decoder takes patch 16 only (MONAI's UNETR fixes it), got patch_size={patch_size}; decoder='unet_adapter' takes 8")
            feature_size = 16 if feature_size is None else feature_size
            norm_name = "instance" if norm_name is None else norm_name
            super().__init__(
                in_channels=in_channels, out_channels=out_channels, img_size=img_size, feature_size=feature_size,
                hidden_size=cfg["hidden_size"], mlp_dim=cfg["mlp_dim"], num_heads=cfg["num_heads"], proj_type="conv",
                norm_name=norm_name, conv_block=True, res_block=res_block, dropout_rate=dropout, spatial_dims=2, qkv_bias=qkv_bias,
            )
            if depth != self.num_layers:
                self.num_layers = depth
                self.vit = ViT(**vit_args)
            self.taps = (depth // 4, depth // 2, 3 * depth // 4)
        else:
            # CheXWorld's UNet adapter (angiokit.networks.unet_adapter). UNETR's own decoder modules
            # would be built only to be thrown away: skip UNETR.__init__ (this stays a UNETR
            # subclass, so one class - and one checkpoint _target_ - serves both decoders).
            check_sizes(img_size, patch_size)
            feature_size = 32 if feature_size is None else feature_size
            norm_name = "batch" if norm_name is None else norm_name
            torch.nn.Module.__init__(self)
            self.num_layers = depth
            self.vit = ViT(**vit_args)
            self.grid_size = (img_size // patch_size, img_size // patch_size)
            self.adapter = UNetAdapter(in_channels, out_channels, cfg["hidden_size"], patch_size, feature_size, norm_name)
        self.decoder = decoder
        self.input_transform = first
        self.frame_channels = int(frame_channels)
        self.input_size = [int(img_size), int(img_size)]
        add_drop_path(self.vit.blocks, drop_path)
        self.encoder_config = {"hidden_size": cfg["hidden_size"], "mlp_dim": cfg["mlp_dim"], "num_layers": depth, "num_heads": cfg["num_heads"], "qkv_bias": qkv_bias, "patch_size": patch_size}
        freeze_unused_cross_attention(self)
        update_constructor(self, feature_size=feature_size, norm_name=norm_name, **{k: cfg[k] for k in SIZE_KEYS})
        apply_pretrained_encoder(self, self.vit, layer_norm_eps, pretrained_encoder, pretrained_format, self.encoder_config)

    def load_pretrained(self, path: str, format: str = "auto") -> None:
        """Load a pre-trained encoder of any layout (``foreign_weights.load_pretrained_encoder``)."""
        apply_pretrained_encoder(self, self.vit, None, path, format, self.encoder_config)

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        if x_in.shape[-2] != self.input_size[0] or x_in.shape[-1] != self.input_size[1]:
            # before: MONAI's ViT failed on the position embedding with "196 vs 64"
            raise ValueError(
                "the network takes {}x{} frames (the size its ViT was built for; the bundle's inferer resizes to it), got {}x{}. "
                "verify_net_in_out with --image_size N also needs --_meta_#network_data_format#inputs#image#spatial_shape \"[N, N]\"".format(
                    self.input_size[0], self.input_size[1], x_in.shape[-2], x_in.shape[-1]))
        x_in = self.input_transform(x_in)
        x, hidden = self.vit(x_in)
        # hasattr on a module is resolved when TorchScript compiles: a scripted model holds only
        # its own decoder's branch
        if hasattr(self, "adapter"):
            # the pyramid is built from the last block, after the encoder's final norm (pre-trained
            # with it; using it also keeps every encoder parameter in the graph, as DDP needs)
            return self.adapter(x_in, tokens_to_grid(x, self.grid_size))
        a, b, c = self.taps
        enc1 = self.encoder1(x_in)
        enc2 = self.encoder2(self.proj_feat(hidden[a]))
        enc3 = self.encoder3(self.proj_feat(hidden[b]))
        enc4 = self.encoder4(self.proj_feat(hidden[c]))
        dec3 = self.decoder5(self.proj_feat(x), enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        return self.out(self.decoder2(dec1, enc1))


@records_constructor
class BasicUNet(nets.BasicUNet):
    """MONAI's ``BasicUNet`` (the CNN baseline trained from scratch), unchanged but for recording
    its constructor in the checkpoints it writes."""


@records_constructor
class DynUNet(nets.DynUNet):
    """MONAI's ``DynUNet`` (the nnU-Net-style CNN baseline; ``configs/dynunet.json``), unchanged
    but for recording its constructor in the checkpoints it writes."""


def layer_decay_param_groups(network: torch.nn.Module, lr: float, weight_decay: float = 0.05, layer_decay: float = 1.0, no_weight_decay=()) -> List[Dict]:
    """AdamW parameter groups with layer-wise lr decay (BEiT / MAE fine-tuning): the decoder gets
    ``lr``, encoder block i gets ``lr * layer_decay ** (depth - i)``, the patch embedding
    ``lr * layer_decay ** (depth + 1)``; no weight decay on biases, norms and the parameters
    named in ``no_weight_decay``. ``angiokit.optim.param_groups`` (the one rule of both bundles)
    with the layer scales, kept for callers of angiokit 0.2."""
    return param_groups(network, weight_decay, no_weight_decay, lr=lr, layer_decay=layer_decay)
