"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import platform
import time
from typing import Callable

import torch


def machine_line() -> str:
    return f"machine={platform.machine()} cpu_count={torch.get_num_threads()} torch={torch.__version__} cuda={torch.cuda.is_available()}"


def per_second(fn: Callable[[int], object], items: int, warmup: int = 2) -> float:
    """Calls ``fn(i)`` for i in range(items) after ``warmup`` calls; returns calls per second."""
    for i in range(warmup):
        fn(-1 - i)
    start = time.perf_counter()
    for i in range(items):
        fn(i)
    return items / (time.perf_counter() - start)


def emit(**values) -> None:
    for key, value in values.items():
        print(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}", flush=True)
