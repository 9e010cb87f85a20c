"""The VasoMIM step, in one place: the objective and the optimizer step around it.

``VasoMIMObjective`` (training, evaluation and ``python -m apps.bench step`` all call it):

    images [B, C, S, S] (+ pre-computed prior [B, 1, S, S])
    -> anatomy maps: guidance map and/or S(images), no grad   (``AnatomyGuidance.step_maps``)
    -> per-patch probabilities [B, N] -> guided masking at alpha (sync-free)
    -> MAE forward: predicted patches [B, N, p*p*C], mask [B, N] (1 = masked)
    -> reconstruction loss on the masked patches
    -> + consistency_weight * BCE(S(reconstruction), S(images))  (anatomical consistency)

Plain MAE is the same objective with ``guided=False`` (alpha forced to 0: uniform masking) and
``consistency_weight=0``; the paper's ablation is those two switches.

``train_step`` is the optimizer step (zero grad, objective under autocast, backward with the
AMP grad scaler when there is one, optimizer step) that ``VasoMIMTrainer._iteration`` and the
benchmark both run, so the benchmark times the shipped step. Nothing here reads a value back to
the host (no ``.item()``, no data-dependent shapes).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..losses import anatomical_consistency_loss
from ..networks.anatomy import AnatomyGuidance
from ..networks.guided_masking import guided_masking, patch_probabilities


def unwrap(network: nn.Module) -> nn.Module:
    """The VasoMIM inside a DistributedDataParallel / DataParallel wrapper (or the network)."""
    return getattr(network, "module", network)


class VasoMIMObjective:
    """Masking, forward pass and loss of one VasoMIM (or plain MAE) step.

    Args:
        anatomy: ``AnatomyGuidance`` (guidance map and frozen segmenter S); a default one is
            made when guided masking or the consistency loss needs it.
        guided: mask by the guidance map at the alpha of each call (False: plain MAE masking).
        consistency_weight: weight of the anatomical consistency loss (0 = off).
    """

    def __init__(self, anatomy: Optional[AnatomyGuidance] = None, guided: bool = True, consistency_weight: float = 0.1):
        if (guided or consistency_weight > 0) and anatomy is None:
            anatomy = AnatomyGuidance()
        self.anatomy, self.guided, self.consistency_weight = anatomy, bool(guided), float(consistency_weight)

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
        keep, mask = guided_masking(probs, mae.num_mask, alpha)
        pred, mask = network(images, keep, mask)
        loss_reconstruction = mae.reconstruction_loss(images, pred, mask)
        if use_consistency:
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
) -> Dict:
    """One optimizer step on ``images`` [B, C, S, S]; returns the objective's dict.

    ``amp_kwargs`` (e.g. ``{"dtype": torch.bfloat16}``) turns autocast on, None keeps it off;
    ``scaler`` (fp16 AMP) scales the loss for backward and unscales for the step.
    """
    optimizer.zero_grad(set_to_none=set_to_none)
    with torch.autocast(images.device.type, enabled=amp_kwargs is not None, **(amp_kwargs or {})):
        out = objective(network, images, prior, alpha)
    if scaler is not None:
        scaler.scale(out["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        out["loss"].backward()
        optimizer.step()
    return out
