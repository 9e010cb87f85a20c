"""What both train tasks add to MONAI Label's bundle train task."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict

from monailabel.tasks.train.bundle import BundleTrainTask

from ..bundles import parse_bundle_config

logger = logging.getLogger(__name__)


class AngioBundleTrain(BundleTrainTask):
    """Fine-tunes the working copy's ``models/model.pt`` (MONAI Label's checkpoint loader) with
    the app's bundle overrides, validating every epoch so that every run writes its best model
    (the bundles keep the checkpoint of the best validation score). With too few labels for a
    held-out validation set, the training labels validate (the saved model is then the best
    fit to them, not a generalisation estimate; the log says so)."""

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any]):
        self.overrides = overrides  # read by _load_bundle_config, during the base constructor
        super().__init__(path, conf, load_strict=True)

    def _load_bundle_config(self, path, config):
        return parse_bundle_config(path, os.path.basename(config), self.overrides)

    def _partition_datalist(self, datalist, request, shuffle=False):
        if not datalist:
            raise ValueError(f"{self.bundle_path}: nothing to train on yet; submit labels first")
        train, val = super()._partition_datalist(datalist, request, shuffle)
        if not val:
            logger.warning(f"{len(datalist)} labelled item(s): no held-out validation set; validating on the training items")
            val = list(train)
        return train, val

    def _update_overrides(self, overrides):
        epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        overrides.update(self.overrides)
        overrides.update({"max_epochs": epochs, "warmup_epochs": min(int(self.overrides.get("warmup_epochs", 1)), max(epochs - 1, 0)), "val_interval": 1})
        return overrides
