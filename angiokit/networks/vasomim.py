"""VasoMIM: a masked autoencoder ViT whose masked patches are chosen by the caller.

Built on MONAI's ``MaskedAutoEncoderViT`` (same modules, same state-dict keys); only the forward
pass changes, so the anatomy-guided sampler in ``guided_masking`` decides which patches hide.

    patchify    [B, C, H, W]            -> [B, N, p*p*C]     reconstruction targets
    embed       [B, C, H, W]            -> [B, N, D]         patch tokens + position embedding
    keep        [B, N, D], keep [B, K]  -> [B, K, D]         visible tokens only
    encode      [B, 1 + K, D]           -> [B, 1 + K, D]     ViT blocks (cls token first)
    decode      [B, 1 + K, D] + mask tokens at the hidden positions -> [B, N, p*p*C]
"""

from __future__ import annotations

from typing import Optional

import torch
from monai.networks.nets import MaskedAutoEncoderViT

from .checkpoint import records_constructor
from .guided_masking import guided_masking
from .presets import PRESETS

# encoder sizes: ``presets.PRESETS``; decoders follow MAE (512 wide, 8 blocks, 16 heads).
MAE_DECODER = dict(decoder_hidden_size=512, decoder_mlp_dim=2048, decoder_num_layers=8, decoder_num_heads=16)


def freeze_unused_cross_attention(module: torch.nn.Module) -> torch.nn.Module:
    """MONAI's ``TransformerBlock`` always creates ``norm_cross_attn``, used only with
    cross-attention; frozen, it no longer trips DDP's unused-parameter check."""
    for block in module.modules():
        if hasattr(block, "norm_cross_attn") and not getattr(block, "with_cross_attention", False):
            block.norm_cross_attn.requires_grad_(False)
    return module


@records_constructor
class VasoMIM(MaskedAutoEncoderViT):
    """2-D masked autoencoder for angiograms.

    Args:
        preset: "vit_s16", "vit_b16" (paper default) or "vit_l16"; explicit keyword arguments
            (hidden_size, num_layers, ...) override the preset, e.g. for tiny test models.
        img_size: input size (square), 224 by default.
        patch_size: 16 by default.
        in_channels: 1 for grey angiograms.
        masking_ratio: fraction of patches hidden (0.5, the VasoMIM default).
        norm_pix_loss: reconstruct per-patch normalised pixels (MAE's option).
        pretrained_encoder: continue pre-training from an MAE / VasoMIM checkpoint (encoder and
            decoder), a timm ViT or a Hugging Face ViTMAE / ViT folder (encoder only; the decoder
            starts fresh): ``foreign_weights.load_pretrained_encoder``. The preset must match it.
        pretrained_format: "auto", "timm" / "mae" or "huggingface".
        layer_norm_eps: LayerNorm eps of encoder and decoder (recorded from an imported
            checkpoint: MAE's 1e-6; None: MONAI's 1e-5).
        **kwargs: any other ``MaskedAutoEncoderViT`` argument.
    """

    def __init__(
        self,
        preset: str = "vit_b16",
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 1,
        masking_ratio: float = 0.5,
        norm_pix_loss: bool = False,
        pretrained_encoder: Optional[str] = None,
        pretrained_format: str = "auto",
        layer_norm_eps: Optional[float] = None,
        **kwargs,
    ):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        from .encoder_export import SIZE_KEYS, vit_sizes

        sizes = vit_sizes(preset, {}, pretrained_encoder, pretrained_format)  # a checkpoint's sizes win over the preset's
        args = {**sizes, **MAE_DECODER, "qkv_bias": True, **kwargs}
        super().__init__(in_channels=in_channels, img_size=img_size, patch_size=patch_size, masking_ratio=masking_ratio, spatial_dims=2, **args)
        self.preset, self.norm_pix_loss, self.in_channels = preset, norm_pix_loss, in_channels
        self.encoder_config = {k: args[k] for k in ("hidden_size", "mlp_dim", "num_layers", "num_heads", "qkv_bias")}
        self.encoder_config.update(in_channels=in_channels, img_size=img_size, patch_size=patch_size)
        freeze_unused_cross_attention(self)
        # continue pre-training from released weights (MAE's ImageNet checkpoints with their
        # decoder, timm / Hugging Face encoders): sizes come from the preset, loading is strict
        from .foreign_weights import apply_pretrained_encoder

        if pretrained_encoder:
            from .checkpoint import update_constructor

            update_constructor(self, **{k: args[k] for k in SIZE_KEYS})
        apply_pretrained_encoder(self, self, layer_norm_eps, pretrained_encoder, pretrained_format)

    # ---- geometry ---------------------------------------------------------------------------

    @property
    def num_patches(self) -> int:
        return int(self.patch_embedding.n_patches)  # a numpy integer in MONAI: torch.compile cannot trace its arithmetic

    @property
    def num_mask(self) -> int:
        return int(round(self.masking_ratio * self.num_patches))

    @property
    def grid(self):
        return tuple(s // p for s, p in zip(self.img_size, self.patch_size))

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, N, p*p*C], patches in row-major order, pixels (row, col, channel)."""
        b, c, h, w = images.shape
        p = self.patch_size[0]
        x = images.reshape(b, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, p*p*C] -> [B, C, H, W] (inverse of ``patchify``)."""
        b = patches.shape[0]
        gh, gw = self.grid
        p, c = self.patch_size[0], self.in_channels
        x = patches.reshape(b, gh, gw, p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)

    # ---- forward: embed, keep, encode, decode -------------------------------------------------

    def encode(self, images: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, C, H, W] (+ visible indices [B, K]) -> [B, 1 + K, D] encoder tokens (cls first)."""
        tokens = self.patch_embedding(images)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return self.blocks(torch.cat([cls, tokens], dim=1))

    def decode(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """[B, 1 + K, D] encoder tokens -> [B, N, p*p*C] predicted patches."""
        x = self.decoder_embed(latent)
        b, n = x.shape[0], self.num_patches
        full = self.mask_tokens.to(x.dtype).expand(b, n, -1).clone()  # x is bf16 under autocast
        full.scatter_(1, keep[..., None].expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], full + self.decoder_pos_embedding], dim=1)
        return self.decoder_pred(self.decoder_blocks(x))[:, 1:]

    def forward(self, images: torch.Tensor, keep: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        """Reconstruct ``images`` [B, C, H, W] from the visible patches ``keep`` [B, K].

        Without ``keep`` the patches are masked uniformly at ``masking_ratio`` (plain MAE).
        Returns (predicted patches [B, N, p*p*C], mask [B, N] with 1 = masked).
        """
        if keep is None:
            probs = torch.zeros(images.shape[0], self.num_patches, device=images.device)
            keep, mask = guided_masking(probs, self.num_mask, 0.0)
        elif mask is None:
            mask = torch.ones(images.shape[0], self.num_patches, dtype=torch.int, device=images.device).scatter_(1, keep, 0)
        return self.decode(self.encode(images, keep), keep), mask

    # ---- losses and images ----------------------------------------------------------------------

    @staticmethod
    def patch_statistics(patches: torch.Tensor):
        """[B, N, P] -> (mean, std) [B, N, 1] of each patch, as MAE's norm_pix_loss uses them
        (unbiased variance, + 1e-6 under the root)."""
        return patches.mean(-1, keepdim=True), (patches.var(-1, keepdim=True) + 1e-6).sqrt()

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, N, p*p*C] what the decoder learns to predict: the patches, each
        normalised to zero mean and unit std when ``norm_pix_loss``."""
        target = self.patchify(images)
        if self.norm_pix_loss:
            mean, std = self.patch_statistics(target)
            target = (target - mean) / std
        return target

    def pixel_prediction(self, images: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Predicted patches [B, N, p*p*C] in the pixel space of ``images``. With
        ``norm_pix_loss`` they are de-normalised with each patch's own mean and std taken from
        ``images`` (MAE's visualisation): statistics of the hidden target the model never saw."""
        if not self.norm_pix_loss:
            return pred
        mean, std = self.patch_statistics(self.patchify(images))
        return pred * std + mean

    def reconstruction_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the masked patches (MAE)."""
        per_patch = ((pred.float() - self.targets(images).float()) ** 2).mean(-1)
        m = mask.to(per_patch.dtype)
        return (per_patch * m).sum() / m.sum().clamp_min(1.0)

    def predicted_image(self, images: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] the decoder's prediction of every patch, visible ones included, in the
        pixel space of ``images`` (de-normalised when ``norm_pix_loss``): the image the official
        VasoMIM consistency loss segments. Differentiable with respect to ``pred``."""
        return self.unpatchify(self.pixel_prediction(images, pred))

    def reconstruct(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The image the model sees and fills in: visible patches from ``images``, masked ones
        from ``pred`` (de-normalised with each patch's own mean and std when ``norm_pix_loss``,
        as MAE's visualisation does). Differentiable with respect to ``pred``."""
        original = self.patchify(images)
        pred = self.pixel_prediction(images, pred)
        m = mask[..., None].to(pred.dtype)
        return self.unpatchify(pred * m + original.to(pred.dtype) * (1 - m))
