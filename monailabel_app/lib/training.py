"""What keeps a training (or scoring) task tied to its server and resumable after a crash.

MONAI Label runs ``/train/<model>`` and ``/scoring/<method>`` in a subprocess of the server
(``python -m monailabel.interfaces.utils.app -m train ...``). Here:

- ``exit_with_server()``: in that subprocess, a watchdog thread that ends the task (and the
  processes it started: data loader workers, torchrun) when the server is gone, so a killed server
  leaves no training behind that keeps rewriting ``models/model.pt``.
- The training record ``<bundle>/models/training.json`` and the per-epoch resume checkpoint in
  ``<bundle>/models/resume/`` (not ``models/*.pt``: MONAI Label offers those as models)::

    {"state": "running" | "done" | "failed", "pid": N, "started": ISO, "max_epochs": N,
     "epoch": N (last completed), "request": {...} (less secrets), "overrides": {...}}

  A record left "running" by a process that is gone is an interrupted training; see
  ``training_status``.
- The ignite handlers the train task adds to a bundle's training to keep both each epoch and to
  resume from the checkpoint (``lib/trainers/bundle_train.py``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from datetime import datetime
from typing import Any, Dict, Optional

import psutil
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from angiokit.data.writers import atomic_path

logger = logging.getLogger(__name__)

TASK_MODULE = "monailabel.interfaces.utils.app"  # what MONAI Label runs a background task as
RECORD_FILE = "training.json"
RESUME_FOLDER = "resume"
WATCH_INTERVAL = 0.5  # seconds between looks at the parent
WRITE_WAIT = 120  # seconds a task whose server is gone waits for a checkpoint being written

# held while a training writes a checkpoint or its record, so that the watchdog never ends the
# process halfway through a file
WRITES = threading.RLock()

# ---- the task subprocess ends with its server -------------------------------------------------

_watchdog: Optional[threading.Thread] = None


def in_task_process() -> bool:
    """Whether this process is a task subprocess of a MONAI Label server (not the server: a
    ``run_sync`` training runs in the server itself, which must not exit with *its* parent)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == TASK_MODULE


def exit_with_server(interval: float = WATCH_INTERVAL) -> None:
    """In a task subprocess, start (once) a daemon thread that kills this process's children and
    exits as soon as the parent (the server) is gone: its parent pid changes when it is
    re-parented. Does nothing elsewhere.

    Not ``prctl(PR_SET_PDEATHSIG)``: it fires when the parent *thread* that spawned us exits (the
    server's executor thread, not the server), and its signal would end this process without
    ending the data loader workers or torchrun processes it started."""
    global _watchdog
    if _watchdog is not None or not in_task_process():
        return
    parent = os.getppid()
    _watchdog = threading.Thread(target=_watch_parent, args=(parent, interval), name=f"exit-with-server-{parent}", daemon=True)
    _watchdog.start()
    logger.info(f"task process {os.getpid()}: exits when its server (pid {parent}) is gone")


def _watch_parent(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    # a checkpoint or record being written is finished first (MONAI writes model.pt in place: cut
    # short, it would be a corrupt model), and none starts after: the lock is never released
    WRITES.acquire(timeout=WRITE_WAIT)
    # Only our own descendants, not our process group: the group is the server's (and the
    # shell's that started it), whose other members are not ours to end.
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    with contextlib.suppress(Exception):  # the log's pipe went with the server
        logger.error(f"task process {os.getpid()}: server (pid {parent}) gone; stopping")
    os._exit(1)  # no cleanup: a training's record stays "running", which marks it interrupted


# ---- the training record ----------------------------------------------------------------------


def record_path(bundle_path: str) -> str:
    return os.path.join(bundle_path, "models", RECORD_FILE)


def resume_folder(bundle_path: str) -> str:
    return os.path.join(bundle_path, "models", RESUME_FOLDER)


def read_record(bundle_path: str) -> Dict[str, Any]:
    """The training record, {} when there is none or it cannot be read."""
    path = record_path(bundle_path)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        logger.warning(f"{path}: unreadable training record ({e}); ignored")
        return {}
    return record if isinstance(record, dict) else {}


def write_record(bundle_path: str, record: Dict[str, Any]) -> None:
    with WRITES, atomic_path(record_path(bundle_path)) as tmp:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2, default=str)


def update_record(bundle_path: str, **changes) -> Dict[str, Any]:
    with WRITES:
        record = {**read_record(bundle_path), **changes}
        write_record(bundle_path, record)
    return record


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


_SECRET_KEY = re.compile(r"pass|secret|token|credential|auth|api_?key", re.IGNORECASE)
_URL_USER = re.compile(r"(?<=://)[^/@\s]+@")


def public_request(request: Dict[str, Any]) -> Dict[str, Any]:
    """The train request without what may be a secret (passwords, tokens, credentials in URLs)."""
    return {k: _URL_USER.sub("", v) if isinstance(v, str) else v for k, v in request.items() if not _SECRET_KEY.search(k)}


# bundle paths of the trainings running in this process (a run_sync training runs in the server)
_training_here: set = set()


@contextlib.contextmanager
def training_in_this_process(bundle_path: str):
    _training_here.add(bundle_path)
    try:
        yield
    finally:
        _training_here.discard(bundle_path)


def training_alive(bundle_path: str, record: Dict[str, Any]) -> bool:
    """Whether the process of a "running" record still runs it: alive, not a zombie, and not a
    later process that got its pid."""
    pid = record.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return bundle_path in _training_here
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = datetime.fromisoformat(record["started"]).timestamp()
        return process.create_time() <= started + 1  # the training process wrote the record after it started
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def resume_checkpoint(bundle_path: str, epoch: int) -> Optional[str]:
    """The resume checkpoint of ``epoch`` (the record's last completed one), None if absent."""
    found = glob.glob(os.path.join(glob.escape(resume_folder(bundle_path)), f"*_epoch={int(epoch)}.pt"))
    return found[0] if found else None


def training_status(bundle_path: str, model: str) -> Optional[Dict[str, Any]]:
    """The last training of the working copy for ``/info``: {"state": "running" | "interrupted" |
    "done" | "failed", "epoch", "max_epochs", ...} with how to resume an interrupted or failed one
    that left a checkpoint; None when it has never been trained here."""
    record = read_record(bundle_path)
    if not record.get("state"):
        return None
    state = record["state"]
    if state == "running" and not training_alive(bundle_path, record):
        state = "interrupted"
    status = {"state": state, "epoch": int(record.get("epoch", 0)), "max_epochs": record.get("max_epochs"), "started": record.get("started")}
    if state == "running":
        status["pid"] = record.get("pid")
    if record.get("resumed_from"):
        status["resumed_from"] = record["resumed_from"]
    if state == "done":
        status["finished"] = record.get("finished")
    if state == "failed":
        status["error"] = record.get("error")
    if state in ("interrupted", "failed") and resume_checkpoint(bundle_path, status["epoch"]):
        status["resume"] = f'POST /train/{model} with {{"resume": true}}'
    return status


# ---- ignite handlers the train task adds to the bundle's train handlers ------------------------


class GuardedCheckpointSaver(CheckpointSaver):
    """MONAI's CheckpointSaver whose writes a task process ending with its server waits for (the
    train task puts it in place of the bundle's savers)."""

    def completed(self, engine: Engine) -> None:
        with WRITES:
            super().completed(engine)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        with WRITES:
            super().exception_raised(engine, e)

    def metrics_completed(self, engine: Engine) -> None:
        with WRITES:
            super().metrics_completed(engine)

    def interval_completed(self, engine: Engine) -> None:
        with WRITES:
            super().interval_completed(engine)


class TrainerCheckpointSaver(GuardedCheckpointSaver):
    """A CheckpointSaver that also saves the state of the engine it is attached to (the
    trainer: epoch and iteration), which a bundle config cannot name among the trainer's own
    handlers (a circular reference)."""

    def attach(self, engine: Engine) -> None:
        self.save_dict["trainer"] = engine  # the saver's Checkpoint reads this same dict at each save
        super().attach(engine)


class TrainerCheckpointLoader(CheckpointLoader):
    """MONAI's CheckpointLoader that also restores the state of the engine it is attached to (see
    ``TrainerCheckpointSaver``): ignite then continues at the epoch after the checkpoint's."""

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        super().attach(engine)


class BestModelTracking:
    """The key-metric tracking of a bundle's best-model ``CheckpointSaver`` (which scores
    ``models/model.pt`` was written for) as a checkpointable object, so that a resumed training
    replaces ``model.pt`` only with a better model than the interrupted run's best. MONAI's saver
    has ``load_state_dict`` but no ``state_dict``; without the tracking (another MONAI version)
    this saves and restores nothing, with a warning."""

    def __init__(self, saver: CheckpointSaver):
        self.checkpoint = getattr(saver, "_key_metric_checkpoint", None)
        if self.checkpoint is None:
            logger.warning(f"{type(saver).__name__} has no key-metric tracking to save: a resumed training's first validation rewrites model.pt")

    def state_dict(self) -> Dict[str, Any]:
        if self.checkpoint is None:
            return {}
        # plain floats: the checkpoint is read with weights_only=True, which refuses numpy scalars
        return {"_saved": [(float(priority), str(filename)) for priority, filename in self.checkpoint._saved]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.checkpoint is not None and state:
            self.checkpoint.load_state_dict(state)


class TrainingRecorder:
    """Writes the last completed epoch into the training record (after the resume checkpoint of
    that epoch: attach it after the ``TrainerCheckpointSaver``), and logs the epochs a training
    runs (after a resume: from the epoch after the checkpoint's)."""

    def __init__(self, bundle_path: str):
        self.bundle_path = bundle_path

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine: Engine) -> None:
        logger.info(f"{self.bundle_path}: training epochs {engine.state.epoch + 1} to {engine.state.max_epochs}")

    def epoch_completed(self, engine: Engine) -> None:
        update_record(self.bundle_path, epoch=int(engine.state.epoch), updated=now())


def clear_resume(bundle_path: str) -> None:
    shutil.rmtree(resume_folder(bundle_path), ignore_errors=True)
