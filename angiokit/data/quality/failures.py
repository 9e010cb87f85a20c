"""The failures a synthetic angiogram S is given, at known severities (``Failure``), and their kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

GUIDEWIRE_MODES = ("fade", "break", "erase")
BRANCH_MODES = ("drop", "break", "blur", "wash")
ARTIFACT_MODES = ("fragments", "ghost", "streaks", "checkerboard", "blotches")


@dataclass
class Failure:
    """Severities in [0, 1] (0 = none) and the kind of each failure."""

    guidewire: float = 0.0
    guidewire_mode: str = "fade"
    branch: float = 0.0
    branch_mode: str = "drop"
    artifact: float = 0.0
    artifact_modes: List[str] = field(default_factory=list)

    @classmethod
    def sample(cls, rng: np.random.Generator, clean_probability: float = 0.25) -> "Failure":
        def severity():
            return 0.0 if rng.random() < clean_probability else float(rng.uniform(0.05, 1.0))

        k = int(rng.integers(1, 3))
        return cls(
            guidewire=severity(), guidewire_mode=str(rng.choice(GUIDEWIRE_MODES)),
            branch=severity(), branch_mode=str(rng.choice(BRANCH_MODES)),
            artifact=severity(), artifact_modes=[str(m) for m in rng.choice(ARTIFACT_MODES, size=k, replace=False)],
        )
