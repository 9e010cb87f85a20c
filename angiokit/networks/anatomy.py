"""The anatomy in VasoMIM: the guidance map that steers masking, and the frozen segmenter S of
the anatomical consistency loss BCE(S(reconstruction), S(original)) (the loss itself:
``angiokit.losses.anatomical_consistency_loss``).

S maps frames [B, C, H, W] to a vessel logit [B, 1, H, W]. It is either
  (a) ``VesselnessSegmenter``: a soft threshold of the differentiable Sato vesselness (no
      training needed; the default), or
  (b) ``FrozenSegmenter``: any trained network (the segmenter bundle's model, or the small U-Net
      of ``python -m apps.prepare bootstrap-segmenter``) loaded from a checkpoint and frozen.
Gradients of the consistency loss flow through S into the reconstruction, never into S.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..transforms import vesselness
from ..transforms.binary_prior import DEFAULT_ROUNDS, binary_prior_from_vesselness, border_for


class VesselnessSegmenter(nn.Module):
    """Vessel logit (V - threshold) / temperature of the Sato vesselness V; its sigmoid is a soft
    vessel probability.

    Defaults are calibrated on frames scaled to [0, 1] at 224 px (synthetic angiograms: median
    V on vessels about 0.04, 95th percentile of the background about 0.03).
    """

    def __init__(self, sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0), threshold: float = 0.04, temperature: float = 0.01):
        super().__init__()
        self.sigmas, self.threshold, self.temperature = tuple(float(s) for s in sigmas), float(threshold), float(temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (vesselness(images.float(), self.sigmas) - self.threshold) / self.temperature


def load_state_file(checkpoint: str, key: Optional[str], what: str = "segmenter checkpoint") -> dict:
    """A raw state dict, or the one a MONAI checkpoint dict holds under ``key``."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: {what} not found")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if key and isinstance(state, dict) and key in state:
        state = state[key]
    return state


def load_trained(network: nn.Module, checkpoint: str, key: Optional[str] = "model") -> nn.Module:
    """Start ``network`` from a trained model's weights, checked at once (not when a trainer
    starts, after its data are cached): a missing file or one of other network settings is
    named."""
    state = load_state_file(checkpoint, key, what="trained model")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{checkpoint}: expected the weights of a {type(network).__name__} with the same network settings; {str(err)[:500]}") from err
    return network


class FrozenSegmenter(nn.Module):
    """A trained segmentation network as S: weights loaded from ``checkpoint`` (a raw state dict
    or a MONAI checkpoint dict holding it under ``key``), in eval mode, no gradients to it.
    Returns the vessel logit: channel 1 minus channel 0 of a 2-class output ("softmax"), or
    channel 0 of a 1-channel output ("sigmoid").
    """

    def __init__(self, network: nn.Module, checkpoint: Optional[str] = None, key: Optional[str] = "network", output: str = "softmax"):
        super().__init__()
        if output not in ("softmax", "sigmoid"):
            raise ValueError(f"output must be 'softmax' or 'sigmoid', got {output!r}")
        self.network, self.output = network, output
        if checkpoint:
            self.network.load_state_dict(load_state_file(checkpoint, key), strict=True)
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True):  # always stays in eval mode (frozen batch-norm / dropout)
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.network(images)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = logits.float()
        return logits[:, 1:2] - logits[:, :1] if self.output == "softmax" else logits[:, :1]


PRIOR_KINDS = ("binary", "continuous")


class AnatomyGuidance(nn.Module):
    """Guidance map = w * prior + (1 - w) * S(image), and S for the consistency loss.

    The prior is used as given when the batch carries one (offline priors of
    ``python -m apps.prepare priors``); otherwise it is computed on the images' device:

    - "binary" (default, the official prior): Sato vesselness of the frame in grey levels,
      truncated, ``prior_border`` zeroed, the 4-connected region of the pixels at or above the
      ``prior_percentile`` grown from the maximum (``angiokit.transforms.binary_vessel_prior``,
      ``prior_rounds`` labelling rounds: no host sync);
    - "continuous": the Sato vesselness scaled to [0, 1] by its maximum.

    Args:
        segmenter: S (default ``VesselnessSegmenter()``).
        prior_weight: w (official VasoMIM: 0.5).
        prior_sigmas: Sato scales of the prior when it is computed here.
        prior: "binary" or "continuous".
        prior_border: pixels zeroed along each edge of the binary prior; None: the official
            20 px of a 512-px frame at the images' size (9 px at 224).
        prior_percentile: the binary prior's threshold (official: 92).
        prior_rounds: labelling rounds of the region growing (see ``grow_from_maximum``).
    """

    def __init__(
        self,
        segmenter: Optional[nn.Module] = None,
        prior_weight: float = 0.5,
        prior_sigmas: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
        prior: str = "binary",
        prior_border: Optional[int] = None,
        prior_percentile: float = 92.0,
        prior_rounds: int = DEFAULT_ROUNDS,
    ):
        super().__init__()
        if not 0.0 <= prior_weight <= 1.0:
            raise ValueError(f"prior_weight must be in [0, 1], got {prior_weight}")
        if prior not in PRIOR_KINDS:
            raise ValueError(f"prior must be one of {PRIOR_KINDS}, got {prior!r}")
        self.segmenter = segmenter if segmenter is not None else VesselnessSegmenter()
        self.segmenter.requires_grad_(False)
        self.prior_weight, self.prior_sigmas = float(prior_weight), tuple(float(s) for s in prior_sigmas)
        self.prior_kind, self.prior_border, self.prior_percentile, self.prior_rounds = prior, prior_border, float(prior_percentile), int(prior_rounds)

    def prior_from_vesselness(self, v: torch.Tensor) -> torch.Tensor:
        """The prior [B, 1, H, W] from the Sato vesselness ``v`` of frames in [0, 1]."""
        if self.prior_kind == "binary":  # the official filter sees 0-255 frames: Sato is linear
            border = border_for(v.shape[-1]) if self.prior_border is None else int(self.prior_border)
            return binary_prior_from_vesselness(v * 255.0, border, self.prior_percentile, self.prior_rounds)
        return v / v.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)

    @torch.no_grad()
    def prior(self, images: torch.Tensor) -> torch.Tensor:
        """The prior of frames in [0, 1] (channels averaged), [B, 1, H, W] in [0, 1]."""
        return self.prior_from_vesselness(vesselness(images.float().mean(1, keepdim=True), self.prior_sigmas))

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """S(images) as a vessel probability [B, 1, H, W]."""
        return torch.sigmoid(self.segmenter(images).float())

    @torch.no_grad()
    def prior_and_segmentation(self, images: torch.Tensor):
        """(prior, S(images)); one vesselness pass serves both when S is the vesselness
        segmenter at the prior's scales (the default)."""
        seg = self.segmenter
        if isinstance(seg, VesselnessSegmenter) and seg.sigmas == self.prior_sigmas and images.shape[1] == 1:
            v = vesselness(images.float(), self.prior_sigmas)
            return self.prior_from_vesselness(v), torch.sigmoid((v - seg.threshold) / seg.temperature)
        return self.prior(images), self.segment(images)

    @torch.no_grad()
    def guidance(self, images: torch.Tensor, prior: Optional[torch.Tensor] = None, segmentation: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 1, H, W] guidance; ``prior`` (e.g. pre-computed, in [0, 1]) and ``segmentation``
        (S of the images) are computed when not given."""
        w = self.prior_weight
        parts = []
        if w > 0:
            parts.append(w * (prior if prior is not None else self.prior(images)))
        if w < 1:
            parts.append((1 - w) * (segmentation if segmentation is not None else self.segment(images)))
        return sum(parts)

    @torch.no_grad()
    def step_maps(self, images: torch.Tensor, prior: Optional[torch.Tensor] = None, guided: bool = True, segmentation: bool = False) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The anatomy one VasoMIM step needs, each map computed at most once.

        Args:
            images: [B, C, H, W] frames.
            prior: [B, 1, H, W] pre-computed prior in [0, 1], or None (computed when needed).
            guided: the step masks by the guidance map (alpha > 0).
            segmentation: the step needs S(images) (the consistency loss is on).

        Returns:
            (guidance [B, 1, H, W] or None when not ``guided``,
             S(images) [B, 1, H, W] or None when neither ``segmentation`` nor the guidance needed it).
        """
        w = self.prior_weight
        need_prior = guided and w > 0 and prior is None
        need_segmentation = segmentation or (guided and w < 1)
        seg = None
        if need_prior and need_segmentation:
            prior, seg = self.prior_and_segmentation(images)  # one vesselness pass when S allows
        elif need_segmentation:
            seg = self.segment(images)
        return (self.guidance(images, prior, seg) if guided else None), seg
