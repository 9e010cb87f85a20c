"""The image encoder CASIQA and the ViTRegressor baseline share: MONAI's ViT on one grey channel,
VasoMIM-sized and VasoMIM-initialisable, seeing the frames area-downsampled by a whole factor."""

from __future__ import annotations

from typing import Optional

from monai.networks.nets import ViT

from ..encoder_export import vit_config
from ..foreign_weights import apply_pretrained_encoder
from ..vasomim import freeze_unused_cross_attention


def encoder_downsampling(img_size: int, encoder_size: Optional[int]) -> int:
    """The integer factor from the input size to the image encoder's (1 when ``encoder_size`` is
    None)."""
    encoder_size = int(encoder_size or img_size)
    if encoder_size <= 0 or int(img_size) % encoder_size:
        raise ValueError(f"encoder_size {encoder_size} must divide img_size {img_size} (the encoder sees the frames downsampled by a whole factor)")
    return int(img_size) // encoder_size


def image_vit(sizes: dict, img_size: int, patch_size: int = 16, dropout: float = 0.0, pretrained_encoder: Optional[str] = None, pretrained_format: str = "auto", owner=None, layer_norm_eps: Optional[float] = None) -> ViT:
    """MONAI's ViT for [B, 1, img_size, img_size] frames -> tokens [B, N, hidden_size], of the
    VasoMIM ``sizes`` (``vit_sizes``: hidden_size, mlp_dim, num_layers, num_heads), started from
    the pre-trained encoder ``pretrained_encoder`` when one is given (a VasoMIM encoder export, an
    MAE / timm checkpoint or a Hugging Face folder: ``foreign_weights``); ``owner``, the network
    whose constructor records the LayerNorm eps of an imported checkpoint."""
    vit = ViT(in_channels=1, img_size=img_size, patch_size=patch_size, hidden_size=sizes["hidden_size"], mlp_dim=sizes["mlp_dim"], num_layers=sizes["num_layers"], num_heads=sizes["num_heads"], qkv_bias=True, dropout_rate=dropout, spatial_dims=2)
    freeze_unused_cross_attention(vit)
    apply_pretrained_encoder(owner if owner is not None else vit, vit, layer_norm_eps, pretrained_encoder, pretrained_format, vit_config(vit))
    return vit
