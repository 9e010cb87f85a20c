"""Benchmarks: ``python -m apps.bench NAME``; each measures ours and a baseline in the same run,
prints ``key=value`` lines and ends with its headline figure."""
