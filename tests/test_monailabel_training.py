"""A training of the MONAI Label app dies with its server and resumes where it stopped: a real
server on loopback killed with SIGKILL in the middle of ``/train``, a second server on the same
model folder, driven over REST (``monailabel_app/lib/training.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import torch

from angiokit.data import write_mask_png, write_png

from apps.experiment import REPO

from .conftest import running_server
from .test_monailabel_app import SEG, _frame, _put_label, _start

requests = pytest.importorskip("requests")

EPOCHS = 30  # tiny epochs (a fraction of a second each on an idle CPU): the training outlives the kill by seconds
TRAIN = {"max_epochs": EPOCHS, "device": "cpu", "multi_gpu": False, "val_split": 0.0}


def _until(condition, timeout: float, what, interval: float = 0.2):
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed; fails
    with ``what`` (or ``what()``) after."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what() if callable(what) else what}: not within {timeout:.0f} s")


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # dead; waits for a parent to reap it
    except psutil.NoSuchProcess:
        return True


def _server_process(url: str) -> psutil.Process:
    port = url.rsplit(":", 1)[1]
    servers = [p for p in psutil.Process().children() if "--port" in p.cmdline() and p.cmdline()[p.cmdline().index("--port") + 1] == port]
    assert len(servers) == 1, servers
    return servers[0]


def _task_processes(server: psutil.Process, method: str) -> list:
    """The server's task subprocesses (``python -m monailabel.interfaces.utils.app -m METHOD``)."""
    return [p for p in server.children() if "monailabel.interfaces.utils.app" in p.cmdline() and method in p.cmdline()]


def _record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_train(url: str, log: Path, timeout: float = 240) -> dict:
    def ended():
        task = requests.get(f"{url}/train/").json()
        return task if task.get("status") in ("DONE", "ERROR", "STOPPED") else None

    return _until(ended, timeout, lambda: f"training ended\n{log.read_text()[-4000:]}", interval=1)


@pytest.fixture
def studies(tmp_path):
    folder = tmp_path / "studies"
    for i in range(4):
        image, vessel = _frame(i)
        write_png(folder / f"frame{i}.png", image[0])
        write_mask_png(tmp_path / "labels" / f"frame{i}.png", vessel[0])
    return folder


def test_a_killed_servers_training_stops_and_resumes_from_its_last_epoch(tmp_path, studies):
    """The issue's failure: after ``kill -9`` of the server its training went on under PID 1
    (rewriting model.pt, its record) and a new server could only start it again from epoch 0."""
    model_dir = tmp_path / "model"
    conf = {"models": "vessel_seg", "model_dir": str(model_dir), "vessel_seg_config": json.dumps({**SEG, "log_interval": 1})}  # every iteration logged: the log shows the epochs run
    models = model_dir / "vessel_seg" / "models"
    record_path, weights = models / "training.json", models / "model.pt"

    with running_server(tmp_path / "first", studies, conf) as (url, log):
        server = _server_process(url)
        for i in range(4):
            r = _put_label({"url": url}, f"frame{i}", tmp_path / "labels" / f"frame{i}.png")
            assert r.status_code == 200, r.text
        r = requests.post(f"{url}/train/vessel_seg", json=TRAIN)
        assert r.status_code == 200, r.text
        _until(lambda: _record(record_path).get("epoch", 0) >= 1, 180, lambda: f"a first epoch recorded in {record_path}\n{log.read_text()[-3000:]}")
        trainings = _task_processes(server, "train")
        assert len(trainings) == 1, trainings
        descendants = trainings[0].children(recursive=True)
        server.kill()  # SIGKILL: the server cannot stop its training itself
        _until(lambda: all(_gone(p) for p in [trainings[0], *descendants]), 5, "the training process gone after its server")
        written = weights.stat().st_mtime_ns
        record = _record(record_path)
        assert record["state"] == "running" and record["pid"] == trainings[0].pid and 1 <= record["epoch"] < EPOCHS, record
        time.sleep(2)  # an orphaned training (or a worker of it) would write an epoch meanwhile
        assert weights.stat().st_mtime_ns == written, "model.pt rewritten after the training process is gone"
        assert _record(record_path) == record
        state = torch.load(models / "resume" / f"checkpoint_epoch={record['epoch']}.pt", map_location="cpu", weights_only=True)
        assert set(state) == {"network", "optimizer", "lr_scheduler", "trainer", "best_model"}, set(state)
        assert state["trainer"]["iteration"] == record["epoch"] * state["trainer"]["epoch_length"], state["trainer"]
        assert len(state["best_model"]["_saved"]) == 1  # the score model.pt was saved for

    epoch = record["epoch"]
    with running_server(tmp_path / "second", studies, conf) as (url, log):
        training = requests.get(f"{url}/info/").json()["trainers"]["vessel_seg"]["training"]
        assert training["state"] == "interrupted" and training["epoch"] == epoch and training["max_epochs"] == EPOCHS, training
        assert training["resume"] == 'POST /train/vessel_seg with {"resume": true}'
        assert f"interrupted after epoch {epoch} of {EPOCHS}" in log.read_text()

        r = requests.post(f"{url}/train/vessel_seg", json={"resume": True})
        assert r.status_code == 200, r.text
        task = _wait_train(url, log)
        assert task["status"] == "DONE", "\n".join(task.get("details", []))
        text = log.read_text()
        assert f"resuming the training started {record['started']} after epoch {epoch} of {EPOCHS}" in text
        assert f"training epochs {epoch + 1} to {EPOCHS}" in text  # the trainer state restored
        assert f"Epoch: {epoch + 1}/{EPOCHS}, Iter: 1/" in text and f"Epoch: {EPOCHS}/{EPOCHS}" in text
        assert f"Epoch: {epoch}/{EPOCHS}, Iter: 1/" not in text  # no epoch before the checkpoint's again
        done = _record(record_path)
        assert done["state"] == "done" and done["epoch"] == EPOCHS and done["resumed_from"] == epoch, done
        assert done["request"]["device"] == "cpu"  # the interrupted training's settings
        assert not (models / "resume").exists()
        training = requests.get(f"{url}/info/").json()["trainers"]["vessel_seg"]["training"]
        assert training["state"] == "done" and training["epoch"] == EPOCHS and "resume" not in training, training
        served = requests.get(f"{url}/info/").json()["models"]["vessel_seg"]["serving"]
        assert served == "ViTSegmenter (vit_tiny, 32 px) trained here on the annotators' labels", served


# ---- the parts, without a server ---------------------------------------------------------------

WATCHED_TASK = textwrap.dedent(
    """
    import os, subprocess, sys, threading, time
    from monailabel_app.lib.training import WRITES, _watch_parent

    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    threading.Thread(target=_watch_parent, args=(os.getppid(), 0.1), daemon=True).start()
    with WRITES:  # a checkpoint being written when the server goes
        print(worker.pid, flush=True)
        time.sleep(1)
        open(sys.argv[1], "w").write("complete")
    time.sleep(120)
    """
)


def test_the_watchdog_ends_the_task_and_its_workers_when_the_parent_dies(tmp_path):
    """A stand-in server (a shell) starts a task that starts a worker and is writing a file when
    the shell is killed: the file is finished, then the task and its worker end."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "task.py").write_text(WATCHED_TASK)
    written = tmp_path / "written"
    server = subprocess.Popen(["bash", "-c", f"{sys.executable} {tmp_path / 'task.py'} {written}; sleep 120"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker = psutil.Process(int(server.stdout.readline()))
        task = psutil.Process(server.pid).children()[0]
        server.kill()
        _until(lambda: _gone(task) and _gone(worker), 5, "the task and its worker gone after their server")
        assert written.read_text() == "complete"
    finally:
        server.kill()
        server.wait()


def test_training_status_tells_running_interrupted_done_and_what_resumes(tmp_path):
    from monailabel_app.lib.training import now, resume_folder, training_status, write_record

    bundle, started = str(tmp_path), now()
    assert training_status(bundle, "m") is None
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    write_record(bundle, {"state": "running", "pid": ended.pid, "started": started, "max_epochs": 5, "epoch": 2})
    assert training_status(bundle, "m") == {"state": "interrupted", "epoch": 2, "max_epochs": 5, "started": started}
    os.makedirs(resume_folder(bundle))
    Path(resume_folder(bundle), "checkpoint_epoch=2.pt").write_bytes(b"")
    assert training_status(bundle, "m")["resume"] == 'POST /train/m with {"resume": true}'

    alive = psutil.Process().parent()
    write_record(bundle, {"state": "running", "pid": alive.pid, "started": started, "max_epochs": 5, "epoch": 2})
    assert training_status(bundle, "m") == {"state": "running", "epoch": 2, "max_epochs": 5, "started": started, "pid": alive.pid}
    # a process that got the pid after the training started is not the training
    before = datetime.fromtimestamp(alive.create_time() - 60).astimezone().isoformat(timespec="seconds")
    write_record(bundle, {"state": "running", "pid": alive.pid, "started": before, "max_epochs": 5, "epoch": 2})
    assert training_status(bundle, "m")["state"] == "interrupted"

    write_record(bundle, {"state": "done", "pid": 1, "started": started, "max_epochs": 5, "epoch": 5, "finished": started})
    assert training_status(bundle, "m") == {"state": "done", "epoch": 5, "max_epochs": 5, "started": started, "finished": started}


def test_resume_with_nothing_to_resume_is_a_clear_error_and_a_plain_training_discards_an_interrupted_one(tmp_path, caplog):
    from monailabel_app.lib.training import resume_folder, write_record

    task = _start(tmp_path / "model", {"vessel_seg_config": json.dumps(SEG)}).trainer()
    with pytest.raises(ValueError, match="nothing to resume: no training of this model is recorded"):
        task({"model": "vessel_seg", "resume": True}, None)
    interrupted = {"state": "running", "pid": 0, "started": "2020-01-01T00:00:00+00:00", "max_epochs": 5, "epoch": 2}
    write_record(task.bundle_path, interrupted)
    with pytest.raises(ValueError, match="left no checkpoint of a completed epoch"):
        task({"model": "vessel_seg", "resume": True}, None)
    write_record(task.bundle_path, {**interrupted, "state": "done", "epoch": 5, "finished": "2020-01-01T00:01:00+00:00"})
    with pytest.raises(ValueError, match="its last training completed all 5 epochs"):
        task({"model": "vessel_seg", "resume": True}, None)

    write_record(task.bundle_path, interrupted)
    os.makedirs(resume_folder(task.bundle_path))
    Path(resume_folder(task.bundle_path), "checkpoint_epoch=2.pt").write_bytes(b"")
    with caplog.at_level("WARNING"):
        task._discard_interrupted(interrupted)
    assert "the interrupted training (epoch 2 of 5) is discarded; training from the start" in caplog.text
    assert not os.path.exists(resume_folder(task.bundle_path))
