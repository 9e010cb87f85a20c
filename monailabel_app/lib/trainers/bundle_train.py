"""What both train tasks add to MONAI Label's bundle train task."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict

from monailabel.tasks.train.bundle import BundleTrainTask

from ..bundles import parse_bundle_config
from ..weights import has_weights, recorded_overrides, without_recorded

logger = logging.getLogger(__name__)


class AngioBundleTrain(BundleTrainTask):
    """Fine-tunes the working copy's ``models/model.pt`` (MONAI Label's checkpoint loader): the
    network its checkpoint records, with the app's other bundle overrides. The classical first
    start has no weights: its first training trains the configured network from its
    initialisation (its pre-trained encoder if one is configured) instead.

    Every epoch validates, so that every run writes its best model (the bundles keep the
    checkpoint of the best validation score). With too few labels for a held-out validation set,
    the training labels validate (the saved model is then the best fit to them, not a
    generalisation estimate; the log says so)."""

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any]):
        self.overrides = overrides  # read by _load_bundle_config, during the base constructor
        super().__init__(path, conf, load_strict=True)

    def _load_bundle_config(self, path, config):
        return parse_bundle_config(path, os.path.basename(config), self.training_overrides())

    def training_overrides(self) -> Dict[str, Any]:
        """The checkpoint's network and settings (when it has weights to fine-tune) over the app's
        overrides: read at each training, as the previous one may have changed the network."""
        recorded = recorded_overrides(self.bundle_path)
        return {**without_recorded(self.bundle_path, self.overrides), **recorded} if recorded else dict(self.overrides)

    def _partition_datalist(self, datalist, request, shuffle=False):
        if not datalist:
            raise ValueError(f"{self.bundle_path}: nothing to train on yet; submit labels first")
        train, val = super()._partition_datalist(datalist, request, shuffle)
        if not val:
            logger.warning(f"{len(datalist)} labelled item(s): no held-out validation set; validating on the training items")
            val = list(train)
        return train, val

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        # the handlers list is the bundle config's own: a loader added by an earlier training
        # must go when the weights became unloadable (and the base adds it again otherwise)
        train_handlers[:] = [h for h in train_handlers if h.get("_target_") != "CheckpointLoader"]
        if not pretrained or not os.path.isfile(model_pytorch):
            return
        if not has_weights(model_pytorch):
            logger.info(f"{model_pytorch}: no weights to fine-tune (the classical first start); training the configured network from its initialisation")
            return
        super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _update_overrides(self, overrides):
        epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        app_overrides = self.training_overrides()
        overrides.update(app_overrides)
        overrides.update({"max_epochs": epochs, "warmup_epochs": min(int(app_overrides.get("warmup_epochs", 1)), max(epochs - 1, 0)), "val_interval": 1})
        return overrides
