"""Starting the MONAI Label app as its users do (``monailabel.main start_server``) in a subprocess
on a free loopback port, for the figure CLI and the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from apps.experiment import REPO


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Until ``url`` answers 200; raises with the log's tail when the process dies or time runs out."""
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{proc.args[0]} exited with {proc.returncode}:\n{Path(log_path).read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise ServerError(f"{url} did not answer in {timeout:.0f} s:\n{Path(log_path).read_text()[-4000:]}")


def app_folder(workdir: Path) -> Path:
    """A folder that is the app (``main.py`` and ``lib/`` linked to the checkout's) for
    ``--app``: MONAI Label creates ``model/``, ``logs/`` and ``bin/`` in the app folder at every
    start, and a test or figure server must leave the checkout as it found it."""
    app = workdir / "app"
    app.mkdir(parents=True, exist_ok=True)
    for part in ("main.py", "lib"):
        if not (app / part).exists():
            os.symlink(os.path.join(REPO, "monailabel_app", part), app / part)
    return app


@contextlib.contextmanager
def serve_app(workdir, studies: str, conf: Dict[str, str], timeout: float = 240, env: Optional[Dict[str, str]] = None, via_script: bool = False) -> Iterator[Tuple[str, Path]]:
    """Yield (URL, log path) of a running ``monailabel_app`` server on ``studies`` with ``--conf``
    ``conf``; stopped on exit. Everything the server writes (its model folder unless ``conf``
    names one, its logs) stays in ``workdir``. ``via_script``: started by the ``monailabel``
    script, as the documentation's commands are (it passes each value through the shell once
    more), instead of ``python -m monailabel.main``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    launcher = [str(Path(sys.executable).parent / "monailabel")] if via_script else [sys.executable, "-m", "monailabel.main"]
    cmd = launcher + ["start_server", "--app", str(app_folder(workdir)), "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port)]
    for k, v in conf.items():
        cmd += ["--conf", k, v]
    # scoring runs when asked (the tests and figures ask); the repository is importable as in a checkout
    env = {**os.environ, **(env or {}), "MONAILABEL_PYEXE": sys.executable, "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    log_path = workdir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{url}/info/", proc, log_path, timeout)
            yield url, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
