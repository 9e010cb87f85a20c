"""Run one benchmark: ``python -m apps.bench NAME [--flags]`` (``python -m apps.bench`` lists them)."""

from __future__ import annotations

import importlib
import os
import sys

BENCHMARKS = {
    "loader": "apps.bench.loader",
    "gpu": "apps.bench.gpu",
    "masking": "apps.bench.masking",
    "prior": "apps.bench.prior",
    "server": "apps.bench.server",
    "step": "apps.bench.step",
    "synth": "apps.bench.synth",
}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        print("usage: python -m apps.bench NAME [--flags]\nbenchmarks: " + ", ".join(sorted(BENCHMARKS)))
        raise SystemExit(0 if not argv else 2)
    if "--threads" not in " ".join(argv):
        # one core unless asked otherwise: set before numpy / torch start their thread pools
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    import fire

    module = importlib.import_module(BENCHMARKS[argv[0]])
    fire.Fire(module.run, command=argv[1:], name=f"apps.bench {argv[0]}")


if __name__ == "__main__":
    main()
