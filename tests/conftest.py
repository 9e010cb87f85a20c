"""Shared fixtures: tiny synthetic samples and the location of the real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from apps._server import free_port  # noqa: F401  (re-exported for the tests: torchrun rendezvous, servers)

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
