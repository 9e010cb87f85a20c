"""Ignite handlers for VasoMIM: the weak-to-strong alpha schedule, reconstruction grids (PNG and
TensorBoard), resumable checkpoint contents and the encoder export at the end of training."""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..visualize import save_grid, to_display


class AlphaScheduleHandler:
    """alpha rises linearly from ``start`` (first epoch) to ``end`` (last epoch), set on the
    trainer at every epoch start (weak-to-strong guidance)."""

    def __init__(self, start: float = 0.0, end: float = 0.5):
        if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
            raise ValueError(f"alpha start and end must be in [0, 1], got {start}, {end}")
        self.start, self.end = float(start), float(end)

    def value(self, epoch: int, max_epochs: int) -> float:
        return self.start + (self.end - self.start) * (epoch - 1) / max(max_epochs - 1, 1)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        engine.alpha = self.value(engine.state.epoch, engine.state.max_epochs)


def reconstruction_tiles(image, masked, reconstruction, guidance) -> List[np.ndarray]:
    """Four uint8 panels of one sample: original, masked, reconstruction, guidance."""
    grey = lambda t: (np.clip(t.detach().float().cpu().numpy()[0], 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return [grey(image), grey(masked), grey(reconstruction), to_display(guidance.detach().float().cpu().numpy()[0])]


def reconstruction_outputs(engine: Engine) -> Dict[str, torch.Tensor]:
    """Image, masked image, reconstruction and guidance of the engine's last batch (trainer or
    evaluator output)."""
    out = engine.state.output
    if "masked" in out:
        return {k: out[k] for k in ("image", "masked", "pred", "guidance")}
    network = getattr(engine.network, "module", engine.network)
    images, mask = out["image"], out["mask"]
    with torch.no_grad():
        reconstruction = network.reconstruct(images, out["pred"].float(), mask).clamp(0, 1)
        masked = network.unpatchify(network.patchify(images) * (1 - mask[..., None].to(images.dtype)))
        anatomy = getattr(engine, "anatomy", None)
        guidance = anatomy.guidance(images) if anatomy is not None else torch.zeros_like(images)
    return {"image": images, "masked": masked, "pred": reconstruction, "guidance": guidance}


class ReconstructionGridHandler:
    """Every ``interval`` epochs: a PNG grid (original | masked | reconstruction | guidance) of up
    to ``num_images`` samples of the last batch, in ``output_dir`` and on TensorBoard."""

    def __init__(self, output_dir: str, interval: int = 10, num_images: int = 4, summary_writer=None, tag: str = "reconstruction"):
        self.output_dir, self.interval, self.num_images = output_dir, max(int(interval), 1), int(num_images)
        self.writer, self.tag = summary_writer, tag

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _final(self, engine: Engine) -> None:
        if engine.state.epoch % self.interval:
            self(engine)

    def __call__(self, engine: Engine) -> Optional[str]:
        outputs = reconstruction_outputs(engine)
        tiles, titles = [], []
        for i in range(min(self.num_images, outputs["image"].shape[0])):
            tiles += reconstruction_tiles(*(outputs[k][i] for k in ("image", "masked", "pred", "guidance")))
            titles += ["original", "masked", "reconstruction", "guidance"]
        path = save_grid(tiles, os.path.join(self.output_dir, f"{self.tag}_epoch{engine.state.epoch:04d}.png"), 4, titles, tile_inches=1.8, dpi=80, compact=True)
        if self.writer is not None:
            from PIL import Image

            grid = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(self.tag, grid, engine.state.epoch, dataformats="HWC")
            self.writer.flush()
        return path


class ReconstructionPNGWriter:
    """Inference: one PNG grid per input image, named after it, in ``output_dir``."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = reconstruction_outputs(engine)
        names = engine.state.output.get("filename", [])
        for i in range(outputs["image"].shape[0]):
            name = os.path.splitext(os.path.basename(str(names[i])))[0] if i < len(names) else f"sample_{engine.state.iteration}_{i}"
            tiles = reconstruction_tiles(*(outputs[k][i] for k in ("image", "masked", "pred", "guidance")))
            save_grid(tiles, os.path.join(self.output_dir, f"{name}_reconstruction.png"), 4, ["original", "masked", "reconstruction", "guidance"], tile_inches=2.0, dpi=90)


def checkpoint_objects(trainer, network, optimizer, lr_scheduler=None, spec=None) -> dict:
    """What a resumable checkpoint holds: network, optimizer, scheduler, trainer state (epoch,
    iteration), the AMP grad scaler when there is one, and (for saving; a ``NetworkSpec``) what
    built the network, so inference rebuilds it from the checkpoint alone."""
    objects = {"network": network, "optimizer": optimizer, "trainer": trainer}
    if spec is not None:
        objects["network_spec"] = spec
    if lr_scheduler is not None:
        objects["lr_scheduler"] = lr_scheduler
    if getattr(trainer, "scaler", None) is not None:
        objects["scaler"] = trainer.scaler
    return objects


class EncoderExportHandler:
    """At the end of training, write the encoder in MONAI ``ViT`` / ``UNETR`` layout."""

    def __init__(self, path: str, network):
        self.path, self.network = path, network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        from ..networks.encoder_export import export_encoder

        export_encoder(self.network, self.path)
