"""The VasoMIM step, in one place: the objective and the optimizer step around it.

``VasoMIMObjective`` (training, evaluation and ``python -m apps.bench step`` all call it):

    images [B, C, S, S] (+ pre-computed prior [B, 1, S, S])
    -> anatomy maps: guidance map and/or S(images), no grad   (``AnatomyGuidance.step_maps``)
    -> per-patch probabilities [B, N] -> guided masking at alpha (sync-free)
    -> MAE forward: predicted patches [B, N, p*p*C], mask [B, N] (1 = masked)
    -> reconstruction loss on the masked patches
    -> + consistency_weight * BCE(S(prediction), S(images))  (anatomical consistency)

As the official code: the consistency weight is 1 and S sees the whole predicted image (every
patch from the decoder, de-normalised when ``norm_pix_loss``); ``consistency_input="pasted"``
gives S the visible patches of the original with the predicted masked ones instead.

Plain MAE is the same objective with ``guided=False`` (alpha forced to 0: uniform masking) and
``consistency_weight=0``; the paper's ablation is those two switches.

``train_step`` is the optimizer step (zero grad, objective under autocast, backward with the
AMP grad scaler when there is one, optimizer step; with gradient accumulation the zeroing and
the step happen at the ends of a cycle) that ``VasoMIMTrainer._iteration`` and the benchmark
both run, so the benchmark times the shipped step. Nothing here reads a value back to the host
(no ``.item()``, no data-dependent shapes).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional

import torch
from torch import nn

from ..losses import anatomical_consistency_loss
from ..networks.anatomy import AnatomyGuidance
from ..networks.guided_masking import guided_masking, patch_probabilities, reference_guided_masking


CONSISTENCY_INPUTS = ("prediction", "pasted")
SAMPLERS = {"batched": guided_masking, "loop": reference_guided_masking}


def unwrap(network: nn.Module) -> nn.Module:
    """The VasoMIM inside a DistributedDataParallel / DataParallel / ``torch.compile`` wrapper
    (or the network)."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)


def compile_network(network: nn.Module, backend: str = "inductor", **kwargs) -> nn.Module:
    """``torch.compile(network, fullgraph=True)``: the MAE forward (encoder on the visible
    patches, decoder) as one graph, static shapes (a batch keeps its size in training). The
    step calls it as it calls the network; the guided masking and the losses stay eager."""
    return torch.compile(network, fullgraph=True, dynamic=False, backend=backend, **kwargs)


class VasoMIMObjective:
    """Masking, forward pass and loss of one VasoMIM (or plain MAE) step.

    Args:
        anatomy: ``AnatomyGuidance`` (guidance map and frozen segmenter S); a default one is
            made when guided masking or the consistency loss needs it.
        guided: mask by the guidance map at the alpha of each call (False: plain MAE masking).
        consistency_weight: weight of the anatomical consistency loss (0 = off; official: 1).
        consistency_input: what S segments for the loss: "prediction" (official: the whole
            predicted image) or "pasted" (visible patches from the original, masked ones
            predicted).
        sampler: "batched" (sync-free, the default) or "loop" (the official per-image loop,
            with host syncs): the same distribution of masks (``guided_masking``).
    """

    def __init__(
        self,
        anatomy: Optional[AnatomyGuidance] = None,
        guided: bool = True,
        consistency_weight: float = 1.0,
        consistency_input: str = "prediction",
        sampler: str = "batched",
    ):
        if consistency_input not in CONSISTENCY_INPUTS:
            raise ValueError(f"consistency_input must be one of {CONSISTENCY_INPUTS}, got {consistency_input!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
        self.sample_masks = SAMPLERS[sampler]
        if (guided or consistency_weight > 0) and anatomy is None:
            anatomy = AnatomyGuidance()
        self.anatomy, self.guided, self.consistency_weight = anatomy, bool(guided), float(consistency_weight)
        self.consistency_input = consistency_input

    def to(self, device) -> "VasoMIMObjective":
        if self.anatomy is not None:
            self.anatomy.to(device)
        return self

    def __call__(self, network: nn.Module, images: torch.Tensor, prior: Optional[torch.Tensor] = None, alpha: float = 0.0) -> Dict:
        """One step's forward pass and loss.

        Args:
            network: a ``VasoMIM`` (possibly DDP-wrapped; the forward goes through the wrapper).
            images: [B, C, S, S] frames on the network's device.
            prior: [B, 1, S, S] pre-computed vessel prior in [0, 1], or None.
            alpha: fraction of the masked patches drawn from the guidance map (ignored, i.e. 0,
                when not ``guided``).

        Returns:
            dict with ``loss``, ``loss_reconstruction``, ``loss_consistency`` (scalars on the
            device), ``pred`` [B, N, p*p*C], ``mask`` [B, N] (1 = masked), ``guidance`` and
            ``segmentation`` ([B, 1, S, S] or None when the step did not need them), ``alpha``.
        """
        mae = unwrap(network)
        alpha = float(alpha) if self.guided else 0.0
        use_consistency = self.consistency_weight > 0
        guidance = segmentation = None
        if alpha > 0 or use_consistency:
            guidance, segmentation = self.anatomy.step_maps(images, prior, guided=alpha > 0, segmentation=use_consistency)
        if guidance is not None:
            probs = patch_probabilities(guidance, mae.patch_size[0])
        else:  # all-zero probabilities: uniform masking
            probs = torch.zeros(images.shape[0], mae.num_patches, device=images.device)
        keep, mask = self.sample_masks(probs, mae.num_mask, alpha)
        pred, mask = network(images, keep, mask)
        loss_reconstruction = mae.reconstruction_loss(images, pred, mask)
        if use_consistency:
            if self.consistency_input == "prediction":
                reconstruction = mae.predicted_image(images, pred)
            else:
                reconstruction = mae.reconstruct(images, pred, mask)
            loss_consistency = anatomical_consistency_loss(self.anatomy.segmenter, reconstruction, segmentation)
        else:
            loss_consistency = torch.zeros((), device=images.device)
        return {
            "loss": loss_reconstruction + self.consistency_weight * loss_consistency,
            "loss_reconstruction": loss_reconstruction,
            "loss_consistency": loss_consistency,
            "pred": pred,
            "mask": mask,
            "guidance": guidance,
            "segmentation": segmentation,
            "alpha": alpha,
        }


def train_step(
    network: nn.Module,
    objective: VasoMIMObjective,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    prior: Optional[torch.Tensor] = None,
    alpha: float = 0.0,
    amp_kwargs: Optional[Dict] = None,
    scaler: Optional[torch.cuda.amp.GradScaler] = None,
    set_to_none: bool = True,
    accumulation_steps: int = 1,
    micro_step: int = 0,
) -> Dict:
    """One optimizer step on ``images`` [B, C, S, S] (or one micro-step of it); returns the
    objective's dict.

    ``amp_kwargs`` (e.g. ``{"dtype": torch.bfloat16}``) turns autocast on, None keeps it off;
    ``scaler`` (fp16 AMP) scales the loss for backward and unscales for the step. With
    ``accumulation_steps`` k > 1, gradients of k batches add up (each loss divided by k): the
    gradients are zeroed at ``micro_step`` 0 and the optimizer steps at ``micro_step`` k - 1;
    between, a DistributedDataParallel network skips its all-reduce (``no_sync``).
    """
    if not 0 <= micro_step < accumulation_steps:
        raise ValueError(f"micro_step must be in [0, {accumulation_steps}), got {micro_step}")
    last = micro_step == accumulation_steps - 1
    if micro_step == 0:
        optimizer.zero_grad(set_to_none=set_to_none)
    no_sync = getattr(network, "no_sync", None)
    with contextlib.nullcontext() if last or no_sync is None else no_sync():
        with torch.autocast(images.device.type, enabled=amp_kwargs is not None, **(amp_kwargs or {})):
            out = objective(network, images, prior, alpha)
        loss = out["loss"] / accumulation_steps if accumulation_steps > 1 else out["loss"]
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if last:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    return out
