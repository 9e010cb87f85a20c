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

The modules, one concern each:

    prompts.py          DEFAULT_PROMPTS: the three metrics' prompts (the bundle configs use them)
    text_encoder.py     ByteTextEncoder: prompt -> query [D]
    residual_encoder.py wire_prior, ResidualEncoder: pixel residuals S - aux -> tokens
    must.py             CrossAttentionPath, MUST: multi-path fusion and per-metric routing
    image_encoder.py    image_vit, encoder_downsampling: the ViT CASIQA and ViTRegressor share
    model.py            CASIQA: the model that puts them together
    vit_regressor.py    ViTRegressor: the plain ViT baseline
    hf_encoder.py       HFVisionEncoder: a Hugging Face backbone as the image encoder

The training loss (``IQALoss``, ``plcc_loss``) lives in ``angiokit.losses.iqa``; it is
re-exported here for code written before it moved.
"""

from ...losses.iqa import IQALoss, plcc_loss
from .hf_encoder import HFVisionEncoder
from .model import CASIQA, encoder_downsampling
from .must import AUX_PATHS, MUST, CrossAttentionPath
from .prompts import DEFAULT_PROMPTS
from .residual_encoder import ResidualEncoder, wire_prior
from .text_encoder import ByteTextEncoder
from .vit_regressor import ViTRegressor

__all__ = [
    "AUX_PATHS",
    "CASIQA",
    "ByteTextEncoder",
    "CrossAttentionPath",
    "DEFAULT_PROMPTS",
    "HFVisionEncoder",
    "IQALoss",
    "MUST",
    "ResidualEncoder",
    "ViTRegressor",
    "encoder_downsampling",
    "plcc_loss",
    "wire_prior",
]
