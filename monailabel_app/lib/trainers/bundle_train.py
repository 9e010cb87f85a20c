"""What both train tasks add to MONAI Label's bundle train task."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from monai.handlers import CheckpointLoader
from monailabel.tasks.train.bundle import BundleTrainTask

from .. import training
from ..bundles import parse_bundle_config
from ..training import (
    clear_resume,
    exit_with_server,
    in_task_process,
    now,
    public_request,
    read_record,
    resume_checkpoint,
    resume_folder,
    training_alive,
    training_in_this_process,
    training_status,
    update_record,
    write_record,
)
from ..weights import has_weights, recorded_overrides, without_recorded

logger = logging.getLogger(__name__)

DEFAULT_MAX_EPOCHS = 50  # MONAI Label's train task's


def _target(handler: type) -> str:
    return f"{training.__name__}.{handler.__name__}"


# the train handlers this task adds: an earlier training's go before each training adds its own
ADDED_HANDLERS = {CheckpointLoader.__name__, *(_target(h) for h in (training.TrainerCheckpointLoader, training.TrainerCheckpointSaver, training.TrainingRecorder))}


# the bundles' checkpoint saver (and what this task replaces it with)
SAVERS = {"CheckpointSaver", "monai.handlers.CheckpointSaver", _target(training.GuardedCheckpointSaver)}


@dataclass
class _Run:
    """What one training runs with: the app's bundle overrides (the network among them) and, when
    it resumes an interrupted training, that training's checkpoint."""

    overrides: Dict[str, Any]
    resume_from: Optional[str] = None


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class AngioBundleTrain(BundleTrainTask):
    """Fine-tunes the working copy's ``models/model.pt`` (MONAI Label's checkpoint loader): the
    network its checkpoint records, with the app's other bundle overrides. The classical first
    start has no weights: its first training trains the configured network from its
    initialisation (its pre-trained encoder if one is configured) instead.

    Every epoch validates, so that every run writes its best model (the bundles keep the
    checkpoint of the best validation score). With too few labels for a held-out validation set,
    the training labels validate (the saved model is then the best fit to them, not a
    generalisation estimate; the log says so).

    Each training keeps a record (``models/training.json``, see ``lib/training.py``) and, every
    epoch, a checkpoint of its state in ``models/resume/``; its task process ends with the
    server. A training whose process died (the server killed, a crash) is reported as
    interrupted at the start and in ``/info`` (``trainers.<name>.training``), and
    ``POST /train/<name>`` with ``{"resume": true}`` continues it: network, optimizer, learning
    rate schedule, trainer state (epoch and iteration) and the best validation score behind
    ``model.pt`` are restored, and it runs to the interrupted training's ``max_epochs`` with its
    request's settings (those given again win) and network. Not restored: the random number
    generators and the data order (the resumed epochs draw other batches and augmentations than
    the interrupted run would have), the evaluator's best-metric log line, and the labels (it
    trains on the labels of now; the epoch length stays the interrupted run's). A plain
    ``/train`` after an interrupted one starts afresh and discards it."""

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any]):
        self.overrides = overrides  # read by _load_bundle_config, during the base constructor
        self._run: Optional[_Run] = None
        exit_with_server()  # as early as a task process builds its app (no-op in the server)
        super().__init__(path, conf, load_strict=True)
        if self.valid and not in_task_process():
            self._report_interrupted()

    @property
    def model_name(self) -> str:
        return os.path.basename(self.bundle_path)  # the working copy is model_dir/<model>

    def info(self):
        i = super().info()
        status = training_status(self.bundle_path, self.model_name)
        if status:
            i["training"] = status
        return i

    def _report_interrupted(self) -> None:
        status = training_status(self.bundle_path, self.model_name)
        if status and status["state"] == "interrupted":
            how = f"{status['resume']} continues it" if status.get("resume") else "no checkpoint to resume it from"
            logger.warning(
                f"{self.model_name}: the training started {status['started']} was interrupted after epoch {status['epoch']} of "
                f"{status['max_epochs']} (its process is gone); {how}; a plain training starts afresh"
            )

    def _load_bundle_config(self, path, config):
        return parse_bundle_config(path, os.path.basename(config), self.training_overrides())

    def training_overrides(self) -> Dict[str, Any]:
        """The checkpoint's network and settings (when it has weights to fine-tune) over the app's
        overrides: read at each training, as the previous one may have changed the network."""
        recorded = recorded_overrides(self.bundle_path)
        return {**without_recorded(self.bundle_path, self.overrides), **recorded} if recorded else dict(self.overrides)

    def __call__(self, request, datastore):
        exit_with_server()
        record = read_record(self.bundle_path)
        if record.get("state") == "running" and training_alive(self.bundle_path, record):
            raise RuntimeError(f"{self.model_name}: a training is already running (pid {record.get('pid')}, epoch {record.get('epoch', 0)} of {record.get('max_epochs')})")
        if _flag(request.pop("resume", False)):
            request, self._run = self._resumed(request, record)
        else:
            self._discard_interrupted(record)
            self._run = _Run(self.training_overrides())
        request["max_epochs"] = int(request.get("max_epochs", DEFAULT_MAX_EPOCHS))
        resumed_from = int(record["epoch"]) if self._run.resume_from else None
        write_record(
            self.bundle_path,
            {
                "state": "running",
                "pid": os.getpid(),
                "started": now(),
                "max_epochs": request["max_epochs"],
                "epoch": resumed_from or 0,
                **({"resumed_from": resumed_from} if resumed_from else {}),
                "request": public_request(request),
                "overrides": self._run.overrides,
            },
        )
        try:
            with training_in_this_process(self.bundle_path):
                result = super().__call__(request, datastore)
        except BaseException as e:  # the resume checkpoint stays: a failed training can be resumed
            update_record(self.bundle_path, state="failed", error=f"{type(e).__name__}: {e}"[:2000], finished=now())
            raise
        finally:
            self._run = None
        update_record(self.bundle_path, state="done", finished=now())
        clear_resume(self.bundle_path)
        return result

    def _resumed(self, request: Dict[str, Any], record: Dict[str, Any]) -> Tuple[Dict[str, Any], _Run]:
        """The request and run that continue the training of ``record``; raises when there is
        nothing to resume."""
        name = self.model_name
        if not record.get("state"):
            raise ValueError(f"{name}: nothing to resume: no training of this model is recorded ({training.record_path(self.bundle_path)})")
        if record["state"] == "done":
            raise ValueError(f"{name}: nothing to resume: its last training completed all {record.get('max_epochs')} epochs ({record.get('finished')})")
        epoch = int(record.get("epoch", 0))
        checkpoint = resume_checkpoint(self.bundle_path, epoch) if epoch > 0 else None
        if checkpoint is None:
            raise ValueError(f"{name}: nothing to resume: its last training ({record['state']}) left no checkpoint of a completed epoch in {resume_folder(self.bundle_path)}")
        max_epochs = int(record["max_epochs"])
        if "max_epochs" in request and int(request["max_epochs"]) != max_epochs:
            logger.warning(f"{name}: resuming runs to the interrupted training's max_epochs ({max_epochs}), not {request['max_epochs']}")
        logger.info(f"{name}: resuming the training started {record.get('started')} after epoch {epoch} of {max_epochs} from {checkpoint}")
        request = {**record.get("request", {}), **request, "max_epochs": max_epochs}
        return request, _Run(dict(record.get("overrides") or self.training_overrides()), checkpoint)

    def _discard_interrupted(self, record: Dict[str, Any]) -> None:
        epoch = int(record.get("epoch", 0))
        if record.get("state") in ("running", "failed") and resume_checkpoint(self.bundle_path, epoch):
            logger.warning(
                f"{self.model_name}: the {'interrupted' if record['state'] == 'running' else 'failed'} training (epoch {epoch} of {record.get('max_epochs')}) "
                f'is discarded; training from the start (POST /train/{self.model_name} with {{"resume": true}} would have continued it)'
            )
        clear_resume(self.bundle_path)

    def _partition_datalist(self, datalist, request, shuffle=False):
        if not datalist:
            raise ValueError(f"{self.bundle_path}: nothing to train on yet; submit labels first")
        train, val = super()._partition_datalist(datalist, request, shuffle)
        if not val:
            logger.warning(f"{len(datalist)} labelled item(s): no held-out validation set; validating on the training items")
            val = list(train)
        return train, val

    def _validation_savers(self) -> Dict[int, Dict[str, Any]]:
        """The bundle's checkpoint savers among the validation handlers, by index."""
        handlers = self.bundle_config.get("validate#handlers", [])
        return {i: h for i, h in enumerate(handlers) if isinstance(h, dict) and h.get("_target_") in SAVERS}

    def _training_state(self) -> Dict[str, Any]:
        """What a resume checkpoint holds, as bundle config references (the trainer itself is added
        by the handlers: see ``TrainerCheckpointSaver``)."""
        state = {"network": f"@{self.const.key_network()}", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"}
        for i, saver in self._validation_savers().items():
            if saver.get("save_key_metric"):
                state["best_model"] = {"_target_": _target(training.BestModelTracking), "saver": f"@validate#handlers#{i}"}
        return state

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        """Where the training starts from (the resume checkpoint, or the fine-tuning load of
        ``model_pytorch``), and what it keeps each epoch (the resume checkpoint, then the record)."""
        # the handlers list is the bundle config's own: what an earlier training added goes (a
        # loader must go when the weights became unloadable; the base adds it again otherwise)
        train_handlers[:] = [h for h in train_handlers if h.get("_target_") not in ADDED_HANDLERS]
        run = self._run or _Run(self.training_overrides())
        if run.resume_from:
            loader = {"_target_": _target(training.TrainerCheckpointLoader), "load_path": run.resume_from, "load_dict": self._training_state(), "strict": True, "map_location": "cpu"}
            train_handlers.insert(0, loader)
        elif pretrained and os.path.isfile(model_pytorch):
            if has_weights(model_pytorch):
                super()._load_checkpoint(model_pytorch, pretrained, train_handlers)
            else:
                logger.info(f"{model_pytorch}: no weights to fine-tune (the classical first start); training the configured network from its initialisation")
        # after the validation handler (EPOCH_COMPLETED handlers run in order): the checkpoint holds
        # the epoch's best-model tracking, and the record names an epoch whose checkpoint is written.
        # Two kept: ignite removes the older before writing the newer, not atomically.
        saver = {"_target_": _target(training.TrainerCheckpointSaver), "save_dir": resume_folder(self.bundle_path), "save_dict": self._training_state(), "save_interval": 1, "n_saved": 2}
        train_handlers += [saver, {"_target_": _target(training.TrainingRecorder), "bundle_path": self.bundle_path}]

    def _update_overrides(self, overrides):
        epochs = int(overrides[self.const.key_train_trainer_max_epochs()])
        app_overrides = self._run.overrides if self._run else self.training_overrides()
        overrides.update(app_overrides)
        overrides.update({"max_epochs": epochs, "warmup_epochs": min(int(app_overrides.get("warmup_epochs", 1)), max(epochs - 1, 0)), "val_interval": 1})
        for i in self._validation_savers():  # model.pt is written in place: not to be cut short by the server's end
            overrides[f"validate#handlers#{i}#_target_"] = _target(training.GuardedCheckpointSaver)
        return overrides
