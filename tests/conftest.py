"""Shared fixtures: tiny synthetic samples and the location of the real data sets."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from apps._server import ServerError, free_port, serve_app  # noqa: F401  (free_port re-exported for the tests: torchrun rendezvous, servers)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ANGIOKIT_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(1)


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test (with the reason) where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available at {path} (set ANGIOKIT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def small_cine():
    from angiokit.data.synthetic import SynthConfig, synthesize

    return synthesize(SynthConfig(size=128, frames=10, guidewire_probability=1.0), seed=3)


@pytest.fixture(scope="session")
def small_frames():
    from angiokit.data.synthetic import SynthConfig, synthesize

    return [synthesize(SynthConfig(size=128), seed=s) for s in range(6)]


def quick_demo_command(out: Path) -> list:
    """``python -m apps.demo --quick`` into ``out``, with the real labelled set (XCAD) and real
    unlabeled frames where ../shared/data has them."""
    cmd = [sys.executable, "-m", "apps.demo", "--quick", "--out", str(out)]
    xcad, frames = SHARED_DATA / "xcad_samples", SHARED_DATA / "xa_cine_kragujevac" / "images"
    if xcad.exists() and frames.exists():
        cmd += ["--labeled", str(xcad), "--unlabeled", str(frames)]
    return cmd


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """One run of the main job at its quick sizes, shared by the tests of what it makes (its
    report, and the evaluation, export and serving of the models it trains with no size flags):
    {"out": Path, "cmd": list, "stdout": str, "real": bool}."""
    out = tmp_path_factory.mktemp("quick_demo") / "demo"
    cmd = quick_demo_command(out)
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"out": out, "cmd": cmd, "stdout": run.stdout, "real": "--labeled" in cmd}


@contextlib.contextmanager
def running_server(*args, **kwargs):
    """``apps._server.serve_app`` for a test: a server that does not start fails the test with its log."""
    try:
        with serve_app(*args, **kwargs) as running:
            yield running
    except ServerError as e:
        pytest.fail(str(e))
