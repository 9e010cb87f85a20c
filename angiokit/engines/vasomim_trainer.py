"""VasoMIM training and reconstruction workflows on MONAI engines.

One iteration (``VasoMIMTrainer._iteration``):
    images [B, 1, S, S] -> S(images) and the guidance map (no grad, on the training device)
    -> per-patch probabilities -> guided masking at the current alpha (sync-free)
    -> MAE forward -> reconstruction loss on the masked patches
    -> + weight * BCE(S(reconstruction), S(images))            (anatomical consistency)
    -> backward (AMP with a grad scaler for fp16) -> optimizer step.

Plain MAE is the same trainer with ``guided=False`` (alpha stays 0) and ``consistency_weight=0``;
the paper's ablation is those two switches.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.utils import CommonKeys as Keys
from torch import nn

from ..networks.anatomy import AnatomyGuidance
from ..networks.guided_masking import guided_masking, patch_probabilities

SCALARS = ("loss", "loss_reconstruction", "loss_consistency", "alpha", "lr")
"""Per-iteration values in the trainer output, logged to TensorBoard."""


def _unwrap(network: nn.Module) -> nn.Module:
    return getattr(network, "module", network)


def _images_and_prior(batch: Dict, device, non_blocking: bool):
    images = batch["image"].to(device, non_blocking=non_blocking).float()
    prior = batch.get("prior")
    return images, (prior.to(device, non_blocking=non_blocking).float() if prior is not None else None)


def vasomim_forward(network: nn.Module, anatomy: Optional[AnatomyGuidance], images: torch.Tensor, prior: Optional[torch.Tensor], alpha: float, need_segmentation: bool):
    """Masking and forward pass shared by training and inference.

    ``alpha`` > 0 masks by the guidance map (needs ``anatomy``); ``need_segmentation`` computes
    S(images) for the consistency loss even when it is not needed for guidance.
    Returns dict(pred, mask, segmentation or None, guidance or None).
    """
    mae = _unwrap(network)
    guided = alpha > 0
    segmentation = guidance = None
    if guided and prior is None and 0 < anatomy.prior_weight < 1:
        prior, segmentation = anatomy.prior_and_segmentation(images)
    elif need_segmentation or (guided and anatomy.prior_weight < 1):
        segmentation = anatomy.segment(images)
    if guided:
        guidance = anatomy.guidance(images, prior, segmentation)
        probs = patch_probabilities(guidance, mae.patch_size[0])
    else:
        probs = torch.zeros(images.shape[0], mae.num_patches, device=images.device)
    keep, mask = guided_masking(probs, mae.num_mask, alpha)
    pred, mask = network(images, keep, mask)
    return {"pred": pred, "mask": mask, "segmentation": segmentation, "guidance": guidance}


class VasoMIMTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` with the VasoMIM iteration.

    Extra args:
        anatomy: ``AnatomyGuidance`` (guidance map and frozen segmenter S).
        guided: anatomy-guided masking on (alpha follows ``AlphaScheduleHandler``).
        consistency_weight: weight of the anatomical consistency loss (0 = off).
        alpha: starting alpha (the schedule handler updates ``engine.alpha``).
    """

    def __init__(self, *args, anatomy: Optional[AnatomyGuidance] = None, guided: bool = True, consistency_weight: float = 0.1, alpha: float = 0.0, **kwargs):
        kwargs.setdefault("loss_function", None)
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        if (guided or consistency_weight > 0) and anatomy is None:
            anatomy = AnatomyGuidance()
        self.anatomy = anatomy.to(self.state.device) if anatomy is not None else None
        self.guided, self.consistency_weight, self.alpha = bool(guided), float(consistency_weight), float(alpha)
        dataset = getattr(self.data_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: dataset.set_epoch(engine.state.epoch))

    def _iteration(self, engine, batchdata: Dict[str, torch.Tensor]) -> Dict:
        images, prior = _images_and_prior(batchdata, engine.state.device, engine.non_blocking)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        use_amp = engine.amp and images.device.type == "cuda"
        with torch.autocast(images.device.type, enabled=use_amp, **(engine.amp_kwargs or {})):
            alpha = self.alpha if self.guided else 0.0
            out = vasomim_forward(engine.network, self.anatomy, images, prior, alpha, self.consistency_weight > 0)
            mae = _unwrap(engine.network)
            loss_rec = mae.reconstruction_loss(images, out["pred"], out["mask"])
            if self.consistency_weight > 0:
                reconstruction = mae.reconstruct(images, out["pred"], out["mask"])
                loss_con = self.anatomy.consistency_loss(reconstruction, out["segmentation"])
            else:
                loss_con = torch.zeros((), device=images.device)
            loss = loss_rec + self.consistency_weight * loss_con
        if use_amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.optimizer.step()
        engine.state.output = {
            Keys.IMAGE: images.detach(),
            Keys.PRED: out["pred"].detach(),
            "mask": out["mask"],
            Keys.LOSS: loss.detach(),
            "loss_reconstruction": loss_rec.detach(),
            "loss_consistency": loss_con.detach(),
            "alpha": alpha,
            "lr": engine.optimizer.param_groups[0]["lr"],
        }
        return engine.state.output


class VasoMIMEvaluator(SupervisedEvaluator):
    """Reconstructions for inference: outputs image, masked image, reconstruction, guidance."""

    def __init__(self, *args, anatomy: Optional[AnatomyGuidance] = None, alpha: float = 0.5, guided: bool = True, seed: int = 0, **kwargs):
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.anatomy = (anatomy or AnatomyGuidance()).to(self.state.device)
        self.alpha, self.guided, self.seed = float(alpha), bool(guided), int(seed)

    def _iteration(self, engine, batchdata: Dict[str, torch.Tensor]) -> Dict:
        images, prior = _images_and_prior(batchdata, engine.state.device, engine.non_blocking)
        engine.network.eval()
        torch.manual_seed(self.seed + engine.state.iteration)  # reproducible masks
        with torch.no_grad():
            out = vasomim_forward(engine.network, self.anatomy, images, prior, self.alpha if self.guided else 0.0, False)
            mae = _unwrap(engine.network)
            reconstruction = mae.reconstruct(images, out["pred"], out["mask"])
            masked = mae.unpatchify(mae.patchify(images) * (1 - out["mask"][..., None].to(images.dtype)))
            guidance = out["guidance"] if out["guidance"] is not None else self.anatomy.guidance(images, prior)
        meta = getattr(batchdata["image"], "meta", {}) or {}
        engine.state.output = {
            Keys.IMAGE: images,
            "masked": masked,
            Keys.PRED: reconstruction.clamp(0, 1),
            "guidance": guidance,
            "filename": meta.get("filename_or_obj", [f"sample_{engine.state.iteration}_{i}" for i in range(images.shape[0])]),
            "loss_reconstruction": mae.reconstruction_loss(images, out["pred"], out["mask"]),
        }
        return engine.state.output
