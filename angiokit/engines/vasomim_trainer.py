"""VasoMIM training and reconstruction workflows on MONAI engines.

Both engines run the one objective of ``vasomim_step`` (guidance map, guided masking at the
current alpha, MAE forward, reconstruction loss on masked patches, anatomical consistency):
the trainer through ``train_step`` (the optimizer step the benchmark times too), the evaluator
without gradients, adding the reconstructions and the per-frame masked-patch errors of
``reconstruction_metrics`` to its output.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.utils import CommonKeys as Keys

from ..networks.anatomy import AnatomyGuidance
from .reconstruction_metrics import masked_patch_errors
from .vasomim_step import VasoMIMObjective, train_step, unwrap

SCALARS = ("loss", "loss_reconstruction", "loss_consistency", "alpha", "lr")
"""Per-iteration values in the trainer output, logged to TensorBoard."""


def _images_and_prior(batch: Dict, device, non_blocking: bool, batch_transform: Optional[Callable] = None):
    """The batch's images [B, C, S, S] and pre-computed prior [B, 1, S, S] (or None), as float32
    on ``device``; ``batch_transform(images, prior)`` first, on the device, when given (e.g. the
    crops and flips of uint8 frames of a packed store: ``gpu_random_resized_crop``)."""
    images = batch["image"].to(device, non_blocking=non_blocking)
    prior = batch.get("prior")
    prior = prior.to(device, non_blocking=non_blocking) if prior is not None else None
    if batch_transform is not None:
        images, prior = batch_transform(images, prior)
    return images.float(), (prior.float() if prior is not None else None)


class VasoMIMTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` with the VasoMIM iteration.

    Extra args:
        anatomy: ``AnatomyGuidance`` (guidance map and frozen segmenter S).
        guided: anatomy-guided masking on (alpha follows ``AlphaScheduleHandler``).
        consistency_weight: weight of the anatomical consistency loss (0 = off; official: 1).
        consistency_input: "prediction" (official) or "pasted", see ``VasoMIMObjective``.
        sampler: "batched" (sync-free) or "loop" (official), see ``VasoMIMObjective``.
        alpha: starting alpha (the schedule handler updates ``engine.alpha``).
        gradient_accumulation_steps: batches whose gradients add up before each optimizer step
            (MAE's ``accum_iter``), counted within each epoch; the global batch is
            batch size x processes x these steps.
        batch_transform: ``(images, prior) -> (images, prior)`` applied to each batch on the
            device before the step (``configs/packed.json`` crops and flips there on CUDA).
    """

    def __init__(
        self,
        *args,
        anatomy: Optional[AnatomyGuidance] = None,
        guided: bool = True,
        consistency_weight: float = 1.0,
        consistency_input: str = "prediction",
        sampler: str = "batched",
        alpha: float = 0.0,
        gradient_accumulation_steps: int = 1,
        batch_transform: Optional[Callable] = None,
        **kwargs,
    ):
        kwargs.setdefault("loss_function", None)
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        if int(gradient_accumulation_steps) < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
        self.objective = VasoMIMObjective(anatomy, guided, consistency_weight, consistency_input, sampler).to(self.state.device)
        self.anatomy, self.alpha = self.objective.anatomy, float(alpha)  # alpha: set by AlphaScheduleHandler
        self.accumulation_steps = int(gradient_accumulation_steps)
        self.batch_transform = batch_transform
        dataset = getattr(self.data_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: dataset.set_epoch(engine.state.epoch))

    def _iteration(self, engine, batchdata: Dict[str, torch.Tensor]) -> Dict:
        images, prior = _images_and_prior(batchdata, engine.state.device, engine.non_blocking, self.batch_transform)
        engine.network.train()
        use_amp = engine.amp and images.device.type == "cuda"
        # cycles restart each epoch (as MAE's accum_iter): a partial cycle's gradients are dropped
        micro_step = ((engine.state.iteration - 1) % engine.state.epoch_length) % self.accumulation_steps
        out = train_step(
            engine.network, self.objective, engine.optimizer, images, prior, self.alpha,
            amp_kwargs=(engine.amp_kwargs or {}) if use_amp else None, scaler=engine.scaler if use_amp else None, set_to_none=engine.optim_set_to_none,
            accumulation_steps=self.accumulation_steps, micro_step=micro_step,
        )
        engine.state.output = {
            Keys.IMAGE: images.detach(),
            Keys.PRED: out["pred"].detach(),
            "mask": out["mask"],
            Keys.LOSS: out["loss"].detach(),
            "loss_reconstruction": out["loss_reconstruction"].detach(),
            "loss_consistency": out["loss_consistency"].detach(),
            "alpha": out["alpha"],
            "lr": engine.optimizer.param_groups[0]["lr"],
        }
        return engine.state.output


class VasoMIMEvaluator(SupervisedEvaluator):
    """Reconstructions for inference: outputs image, masked image, reconstruction, guidance, the
    reconstruction loss and ``masked_mse`` (per-frame masked-patch errors [B] of the model and of
    the mean predictor, see ``reconstruction_metrics``). Masks are drawn at ``alpha`` (guided) or
    uniformly, reproducibly from ``seed``."""

    def __init__(self, *args, anatomy: Optional[AnatomyGuidance] = None, alpha: float = 0.5, guided: bool = True, seed: int = 0, **kwargs):
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        # the guidance map is shown even without guided masking, so there is always an anatomy
        self.objective = VasoMIMObjective(anatomy or AnatomyGuidance(), guided, consistency_weight=0.0).to(self.state.device)
        self.anatomy, self.alpha, self.seed = self.objective.anatomy, float(alpha), int(seed)

    def _iteration(self, engine, batchdata: Dict[str, torch.Tensor]) -> Dict:
        images, prior = _images_and_prior(batchdata, engine.state.device, engine.non_blocking)
        engine.network.eval()
        torch.manual_seed(self.seed + engine.state.iteration)  # reproducible masks
        with torch.no_grad():
            out = self.objective(engine.network, images, prior, self.alpha)
            mae = unwrap(engine.network)
            reconstruction = mae.reconstruct(images, out["pred"], out["mask"])
            masked = mae.unpatchify(mae.patchify(images) * (1 - out["mask"][..., None].to(images.dtype)))
            guidance = out["guidance"] if out["guidance"] is not None else self.anatomy.guidance(images, prior)
            errors = masked_patch_errors(mae, images, out["pred"], out["mask"])
        meta = getattr(batchdata["image"], "meta", {}) or {}
        engine.state.output = {
            Keys.IMAGE: images,
            "masked": masked,
            Keys.PRED: reconstruction.clamp(0, 1),
            "guidance": guidance,
            "filename": meta.get("filename_or_obj", [f"sample_{engine.state.iteration}_{i}" for i in range(images.shape[0])]),
            "loss_reconstruction": out["loss_reconstruction"],
            "masked_mse": errors,
        }
        return engine.state.output
