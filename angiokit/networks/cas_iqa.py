"""CAS-IQA: quality of synthetic angiograms on clinical metrics, asked as text prompts.

    S [B, 1, H, W] (+ auxiliary F, C)  --shared ViT-->  visual tokens [B, N, D] per image
    MUST (Multi-path featUre fuSion and rouTing):
        paths   "self"       S tokens
                "fluoro"     S tokens attending to F's tokens (cross-attention), and tokens of the
                             pixel residual S - F beside F, the iodine map C - F and F's wire
                             prior (a small CNN, ``ResidualEncoder``: the frames are of the same
                             moment, so their pixels align)
                "reference"  the same with C
        per metric query q_m (the text encoder's embedding of the metric's prompt):
            token routing   attention pooling of each path's tokens with q_m, with
                            the path's token-wise maximum                          -> v_mp [D]
            path routing    softmax over the available paths of router(q_m, v_mp) -> w_mp, sum 1
            fused           z_m = sum_p w_mp v_mp
    head  (z_m, q_m) -> logits over five levels (bad, poor, fair, good, excellent);
          score = expectation over the levels, 1-5, as VLM scorers do.

A metric is a prompt, not a hard-coded output: new prompts train without code changes. The text
encoder reads UTF-8 bytes (a byte-level tokenizer: no vocabulary file to ship).
Ablations: ``auxiliary=()`` (S alone) and ``fusion="mean"`` (no MUST: mean-pooled tokens of S,
the auxiliary images and the residuals concatenated, one linear map per query).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import ViT
from torch import nn

from ..metrics.correlation import expected_level
from .checkpoint import records_constructor, update_constructor
from .encoder_export import SIZE_KEYS, load_encoder_file, vit_config, vit_sizes
from .vasomim import freeze_unused_cross_attention

DEFAULT_PROMPTS = {
    "guidewire": "How visible is the guidewire in this synthetic angiogram?",
    "branch": "How well can the vessel branches be told apart in this synthetic angiogram?",
    "artifact": "How free is this synthetic angiogram from artifacts?",
}
AUX_PATHS = ("fluoro", "reference")


class ByteTextEncoder(nn.Module):
    """Prompt -> [D] embedding: UTF-8 bytes, learned byte and position embeddings, a small
    transformer, mean pooling over the non-padding bytes."""

    def __init__(self, dim: int = 256, layers: int = 2, heads: int = 4, max_bytes: int = 128):
        super().__init__()
        self.max_bytes = max_bytes
        self.embed = nn.Embedding(257, dim, padding_idx=256)  # 256 = padding
        self.position = nn.Parameter(torch.zeros(1, max_bytes, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: Sequence[str], device) -> torch.Tensor:
        ids = torch.full((len(prompts), self.max_bytes), 256, dtype=torch.long)
        for i, p in enumerate(prompts):
            b = list(p.encode("utf-8"))[: self.max_bytes]
            ids[i, : len(b)] = torch.tensor(b, dtype=torch.long)
        return ids.to(device)

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize(prompts, self.position.device)
        pad = ids == 256
        x = self.encoder(self.embed(ids) + self.position, src_key_padding_mask=pad)
        keep = (~pad).float()[..., None]
        return self.norm((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))


def encoder_downsampling(img_size: int, encoder_size: Optional[int]) -> int:
    """The integer factor from the input size to the image encoder's (1 when ``encoder_size`` is
    None)."""
    encoder_size = int(encoder_size or img_size)
    if encoder_size <= 0 or int(img_size) % encoder_size:
        raise ValueError(f"encoder_size {encoder_size} must divide img_size {img_size} (the encoder sees the frames downsampled by a whole factor)")
    return int(img_size) // encoder_size


def wire_prior(fluoro: torch.Tensor) -> torch.Tensor:
    """Where F has thin dark lines: its local mean minus F, clipped at 0 [B, 1, H, W].

    F (no contrast) holds only the guidewire, the catheter and the anatomy's slow background, so
    this is a guidewire map, the wire's counterpart of VasoMIM's vesselness prior. A box mean
    about 1/40 of the image wide (7 px at 128): wider than the wire, narrower than the
    background's shading. By hand, a box mean rather than skimage's black top-hat: one pooling
    op, batched on the model's device, inside the forward pass."""
    k = max(3, 2 * (fluoro.shape[-1] // 40) + 1)
    return (F.avg_pool2d(fluoro, k, 1, k // 2, count_include_pad=False) - fluoro).clamp_min(0)


class ResidualEncoder(nn.Module):
    """The residual S - aux, beside aux, the iodine map C - F and the wire prior of F (each zeros
    when F or C is not shown), in pixels -> one token per ``patch`` x ``patch`` patch (the ViT's
    grid) of frames ``unshuffle`` times the ViT's size.

    Convolutions, not the ViT: a lost guidewire or side branch is a line a few pixels wide in the
    residual, which small convolutions pick out from few examples; the iodine map tells the two
    apart where the line is (the wire is in C and F alike, a branch only in C). The residual
    weighted by the wire prior is given as a channel of its own: the lost wire is the residual
    exactly on F's wire, a product that conv + GELU stacks did not learn from ~1,000 cases (the
    residual encoder alone, regressing the MOS: guidewire validation SRCC 0.02 without it, 0.73
    with it). Batch normalisation, not a per-sample one, so the tokens keep how much was lost
    (the residual's magnitude).

    ``unshuffle`` > 1: the frames come at that multiple of the ViT's size and the five channels,
    products taken at full resolution, are folded into ``unshuffle`` squared times as many
    channels of the ViT's size (pixel unshuffle, lossless) before a 3 x 3 stem: the 0.36 mm wire is
    under half a pixel across at 128 px, and its loss is measured at 256 (the residual encoder
    alone regressing the guidewire MOS of 1,936 cases, validation SRCC after 12 epochs: 0.858 at
    128 px, 0.875 folded from 256 px, 0.873 with the 5 x 5 stem run on the 256 px frames, 3.5
    times slower than folded)."""

    gain = 4.0  # residuals are a few per cent of the intensity range
    wire_gain = 10.0  # the wire is ~0.1 darker than its surround
    channels = 5

    def __init__(self, dim: int, patch: int = 16, width: int = 32, unshuffle: int = 1):
        super().__init__()
        steps = int(round(math.log2(patch)))
        if 2**steps != patch:
            raise ValueError(f"the residual encoder needs a power-of-two patch size, got {patch}")
        if unshuffle < 1:
            raise ValueError(f"unshuffle must be a positive integer, got {unshuffle}")
        self.unshuffle = int(unshuffle)
        # a stem whose outputs are also multiplied in pairs (a bilinear layer): products of
        # residual and aux filters are matched filters, which additive stacks only approximate
        kernel = 5 if unshuffle == 1 else 3  # 3 x 3 folded pixels span 6 x 6 of the full frame
        self.stem = nn.Conv2d(self.channels * self.unshuffle**2, 3 * width, kernel, stride=2, padding=kernel // 2)
        self.stem_norm = nn.BatchNorm2d(2 * width)
        layers, channels = [], 2 * width
        for i in range(1, steps):
            out = min(width * 2**i, dim)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
            channels = out
        self.net = nn.Sequential(*layers, nn.Conv2d(channels, dim, 1))

    def forward(self, image: torch.Tensor, aux: torch.Tensor, iodine: torch.Tensor, wire: torch.Tensor) -> torch.Tensor:
        residual, wire = self.gain * (image - aux), self.wire_gain * wire
        x = torch.cat([residual, aux, self.gain * iodine, wire, residual * wire], 1)
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        plain, left, right = self.stem(x).chunk(3, 1)
        x = self.net(self.stem_norm(torch.cat([F.gelu(plain), left * right], 1)))
        return x.flatten(2).transpose(1, 2)


class CrossAttentionPath(nn.Module):
    """One auxiliary path: S's tokens attending to the auxiliary image's tokens, plus the tokens
    of the residual S - aux (``ResidualEncoder``: it sees aux's pixels beside the residual, as the
    frames are of the same moment). Returns N + N_r tokens: [S attended to aux | residual].

    The residual is compared in pixels, not in tokens: a lost guidewire or side branch is a thin
    line a few pixels wide, which 16-pixel patch tokens of S and aux encoded apart do not keep."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.compare = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, s: torch.Tensor, aux: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        kv = self.norm_kv(aux)
        x = s + self.attention(self.norm_q(s), kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        if residual is None:
            return x
        return torch.cat([x, residual + self.compare(residual)], 1)


class MUST(nn.Module):
    """Multi-path feature fusion and per-metric routing (see the module doc)."""

    def __init__(self, dim: int, heads: int, paths: Sequence[str] = ("self",) + AUX_PATHS):
        super().__init__()
        self.paths = tuple(paths)
        self.cross = nn.ModuleDict({p: CrossAttentionPath(dim, heads) for p in self.paths if p != "self"})
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.combine = nn.Linear(2 * dim, dim)
        self.router = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, s: torch.Tensor, aux: Dict[str, Optional[torch.Tensor]], queries: torch.Tensor, available: Optional[Dict[str, torch.Tensor]] = None, residuals: Optional[Dict[str, torch.Tensor]] = None):
        """s [B, N, D]; aux name -> [B, N', D] tokens or None; queries [M, D]; ``available``
        name -> [B] bool marks which samples have that auxiliary image (default: all, when given);
        ``residuals`` name -> [B, N_r, D] tokens of S - aux.

        Returns fused [B, M, D], path weights [B, M, P] (zero for missing paths, rows sum to 1)
        and token weights [B, M, P, N'] (N' = the longest path; each path's weights sum to 1).
        """
        b, m = s.shape[0], queries.shape[0]
        tokens, masks = [], []
        for p in self.paths:
            if p == "self":
                tokens.append(s)
                masks.append(torch.ones(b, dtype=torch.bool, device=s.device))
            elif aux.get(p) is not None:
                tokens.append(self.cross[p](s, aux[p], (residuals or {}).get(p)))
                masks.append(available[p].to(s.device).bool() if available and p in available else torch.ones(b, dtype=torch.bool, device=s.device))
            else:
                tokens.append(None)
                masks.append(torch.zeros(b, dtype=torch.bool, device=s.device))
        n = max(t.shape[1] for t in tokens if t is not None)
        # pad to a common token count (the self path has N, auxiliary paths N + N_r); padding is
        # masked out of the token routing
        token_mask = torch.stack([torch.arange(n, device=s.device) < (t.shape[1] if t is not None else 0) for t in tokens])  # [P, N]
        t = torch.stack([F.pad(x, (0, 0, 0, n - x.shape[1])) if x is not None else s.new_zeros(b, n, s.shape[-1]) for x in tokens], 1)  # [B, P, N, D]
        q = self.query(queries)  # [M, D]
        logits = torch.einsum("md,bpnd->bmpn", q, self.key(t)) * self.scale
        logits = logits.masked_fill(~token_mask[None, None], float("-inf"))
        token_weights = logits.softmax(-1).nan_to_num(nan=0.0)  # routing of visual tokens per metric and path
        values = self.value(t)
        attended = torch.einsum("bmpn,bpnd->bmpd", token_weights, values)
        # the strongest response of each feature too: small structures (a guidewire covers a
        # few patches) are lost in any average until the routing has learned to focus
        peak = values.masked_fill(~token_mask[None, :, :, None], float("-inf")).amax(2)
        peak = peak.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # [B, P, D]; a missing path has no peak
        pooled = self.combine(torch.cat([attended, peak[:, None].expand_as(attended)], -1))
        qexp = queries[None, :, None, :].expand(b, m, len(self.paths), -1)
        route = self.router(torch.cat([qexp, pooled], -1))[..., 0]  # [B, M, P]
        mask = torch.stack(masks, 1)[:, None, :]  # [B, 1, P]
        path_weights = route.masked_fill(~mask, float("-inf")).softmax(-1)
        fused = torch.einsum("bmp,bmpd->bmd", path_weights, pooled)
        return fused, path_weights, token_weights


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
        pretrained_encoder: a VasoMIM encoder export to start the image encoder from.
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
        **overrides,
    ):
        super().__init__()
        self.aux_dropout = float(aux_dropout)
        if fusion not in ("must", "mean"):
            raise ValueError(f"fusion must be 'must' or 'mean', got {fusion!r}")
        unknown = set(auxiliary) - set(AUX_PATHS)
        if unknown:
            raise ValueError(f"unknown auxiliary images {sorted(unknown)}; known: {AUX_PATHS}")
        cfg = vit_sizes(preset, overrides, pretrained_encoder)
        update_constructor(self, **{k: cfg[k] for k in SIZE_KEYS})
        dim, heads = cfg["hidden_size"], cfg["num_heads"]
        self.downsample = encoder_downsampling(img_size, encoder_size)
        if image_encoder is None:
            self.vit = ViT(in_channels=1, img_size=int(img_size) // self.downsample, patch_size=patch_size, hidden_size=dim, mlp_dim=cfg["mlp_dim"], num_layers=cfg["num_layers"], num_heads=heads, qkv_bias=True, dropout_rate=dropout, spatial_dims=2)
            freeze_unused_cross_attention(self.vit)
            if pretrained_encoder:
                load_encoder_file(self.vit, pretrained_encoder, vit_config(self.vit))
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
        tokens = self.encode_image(torch.cat([image] + aux_images)).split(image.shape[0])  # one pass
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
            residual_tokens = self.residual_encoder(image.repeat(n, 1, 1, 1), torch.cat(aux_images), iodine.repeat(n, 1, 1, 1), wire_prior(fluoro_shown).repeat(n, 1, 1, 1)).split(image.shape[0])
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


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, min_std: float = 0.25) -> torch.Tensor:
    """1 - Pearson correlation per metric over the batch, averaged: [B, M] inputs.

    The predictions' spread is floored at ``min_std`` (score units). Pearson correlation is
    scale-free, so its gradient grows as 1 / std(pred): with the near-constant scores of an
    untrained model it swamped the level cross-entropy, and the term was met by tiny batch-wise
    rank differences (training SRCC ~0.9 at score std ~0.005) that do not generalise. Below the
    floor the term is a bounded covariance reward; above it, the plain 1 - PLCC."""
    p, t = pred - pred.mean(0), target - target.mean(0)
    floor = min_std * math.sqrt(pred.shape[0])
    r = (p * t).sum(0) / (p.norm(dim=0).clamp_min(floor) * t.norm(dim=0)).clamp_min(1e-6)
    return (1.0 - r).mean()


class IQALoss(nn.Module):
    """For level logits [B, M, 5]: cross-entropy against the raters' distribution over the five
    levels; for score regressors [B, M]: mean squared error to the MOS. Plus ``plcc_weight`` x
    (1 - PLCC) of the scores. ``target`` [B, M, 6]: the distribution, then the MOS."""

    def __init__(self, plcc_weight: float = 0.0):
        super().__init__()
        self.plcc_weight = float(plcc_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distribution, mos = target[..., :5].float(), target[..., 5].float()
        if pred.ndim == 3:
            loss = -(distribution * F.log_softmax(pred.float(), -1)).sum(-1).mean()
            scores = CASIQA.scores(pred)
        else:
            scores = pred.float()
            loss = F.mse_loss(scores, mos)
        if self.plcc_weight > 0 and pred.shape[0] > 2:
            loss = loss + self.plcc_weight * plcc_loss(scores, mos)
        return loss


@records_constructor
class ViTRegressor(nn.Module):
    """Baseline: a plain ViT on S alone, mean-pooled, regressing the metric scores (no prompts,
    no auxiliary images, no MUST)."""

    def __init__(self, preset: str = "vit_b16", img_size: int = 224, num_metrics: int = 3, pretrained_encoder: Optional[str] = None, encoder_size: Optional[int] = None, **overrides):
        super().__init__()
        cfg = vit_sizes(preset, overrides, pretrained_encoder)
        update_constructor(self, **{k: cfg[k] for k in SIZE_KEYS})
        self.downsample = encoder_downsampling(img_size, encoder_size)  # as CASIQA's ViT sees S
        self.vit = ViT(in_channels=1, img_size=int(img_size) // self.downsample, patch_size=16, hidden_size=cfg["hidden_size"], mlp_dim=cfg["mlp_dim"], num_layers=cfg["num_layers"], num_heads=cfg["num_heads"], qkv_bias=True, spatial_dims=2)
        freeze_unused_cross_attention(self.vit)
        if pretrained_encoder:
            load_encoder_file(self.vit, pretrained_encoder, vit_config(self.vit))
        self.head = nn.Sequential(nn.LayerNorm(cfg["hidden_size"]), nn.Linear(cfg["hidden_size"], num_metrics))

    def forward(self, image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        tokens, _ = self.vit(F.avg_pool2d(image, self.downsample) if self.downsample > 1 else image)
        return 3.0 + 2.0 * torch.tanh(self.head(tokens.mean(1)))  # [B, M] in (1, 5)


class HFVisionEncoder(nn.Module):
    """A Hugging Face vision (or vision-language) backbone from a local path as the image
    encoder: ``AutoModel.from_pretrained(path)``; a VLM's ``vision_model`` is used when present.
    Grey frames are repeated to the backbone's channels; tokens are projected to ``dim``."""

    def __init__(self, path: str, dim: int, local_files_only: bool = True):
        super().__init__()
        from transformers import AutoModel

        model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
        self.backbone = getattr(model, "vision_model", model)
        config = self.backbone.config
        self.channels = int(getattr(config, "num_channels", 3))
        self.project = nn.Linear(int(config.hidden_size), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        out = self.backbone(pixel_values=x)
        return self.project(out.last_hidden_state)


__all__: List[str] = ["CASIQA", "ByteTextEncoder", "ResidualEncoder", "DEFAULT_PROMPTS", "HFVisionEncoder", "IQALoss", "MUST", "ViTRegressor", "plcc_loss"]
