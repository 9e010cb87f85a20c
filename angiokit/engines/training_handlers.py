"""Training handlers every supervised bundle shares: validation that always runs at the last epoch
(so a run shorter than the validation interval still writes its key-metric checkpoint) and a log
line at the end that says where the weights went."""

from __future__ import annotations

import glob
import logging
import os
from typing import Optional

from ignite.engine import Engine, Events
from monai.engines import Evaluator
from monai.handlers import ValidationHandler

logger = logging.getLogger(__name__)


class ValidateEveryAndLast(ValidationHandler):
    """MONAI's ``ValidationHandler`` (every ``interval`` epochs) plus the last epoch: the checkpoint
    of the bundles is saved by the validator (best key metric), so a run of fewer epochs than the
    interval, or one whose last epoch is not a multiple of it, would otherwise end with no weights
    or with weights that miss its last epochs."""

    def __init__(self, interval: int, validator: Optional[Evaluator] = None, exec_at_start: bool = False) -> None:
        super().__init__(interval=interval, validator=validator, epoch_level=True, exec_at_start=exec_at_start)

    def due(self, engine: Engine, epoch: int) -> bool:
        return epoch % self.interval == 0 or epoch == engine.state.max_epochs

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=self.due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)


class WeightsReport:
    """At the end of training, log the checkpoint files of ``ckpt_dir`` (with the validator's best
    key metric and its epoch when a validator is given), or warn that none was written."""

    def __init__(self, ckpt_dir: str, validator: Optional[Evaluator] = None, pattern: str = "*.pt"):
        self.ckpt_dir, self.validator, self.pattern = ckpt_dir, validator, pattern

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def message(self) -> str:
        files = sorted(glob.glob(os.path.join(self.ckpt_dir, self.pattern)))
        if not files:
            return f"no weights were written in {os.path.abspath(self.ckpt_dir)} (no {self.pattern} file)"
        text = "weights: " + ", ".join(os.path.abspath(f) for f in files)
        state = getattr(self.validator, "state", None)
        if state is not None and getattr(state, "best_metric_epoch", -1) > 0:
            text += f" (best {state.key_metric_name} {state.best_metric:.4f} at epoch {state.best_metric_epoch})"
        return text

    def __call__(self, engine: Engine) -> None:
        text = self.message()
        (logger.warning if text.startswith("no weights") else logger.info)(text)
