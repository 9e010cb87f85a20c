"""Run a per-case writer over many cases, in worker processes when asked, with one progress bar."""

from __future__ import annotations

import multiprocessing as mp
from typing import Callable, List, Sequence


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one case per process: the workers share the cores


def map_cases(write: Callable, jobs: Sequence, workers: int = 1, desc: str = "", unit: str = "case", progress: bool = True, chunksize: int = 2) -> List:
    """``[write(job) for job in jobs]`` in order; with ``workers`` > 1 in that many spawned processes
    (spawned, not forked: a forked torch / OpenMP runtime can hang), each torch on one thread."""
    from tqdm import tqdm

    results = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1:
            with mp.get_context("spawn").Pool(workers, initializer=_one_torch_thread) as pool:
                for result in pool.imap(write, jobs, chunksize=chunksize):
                    results.append(result)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(write(job))
                bar.update(1)
    return results
