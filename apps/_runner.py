"""Running bundle workflows as subprocesses with logs, shared by the experiment apps."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EPOCH = re.compile(r"Epoch: (\d+)/(\d+)")


def last_epoch(log: str) -> Optional[Tuple[int, int]]:
    """(epoch, of) from the last "Epoch: e/N" line MONAI's trainers log, or None."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = EPOCH.findall(tail)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def run_logged(cmd: List[str], log: str, label: str = "", poll_s: float = 2.0) -> float:
    """Run a command from the repository root, output to ``log``; seconds taken. While it runs,
    prints ``label``'s epoch progress whenever it changes. Raises with the log's tail on failure."""
    start = time.time()
    print(f"$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        shown = None
        while True:
            try:
                proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            epoch = last_epoch(log)
            if label and epoch and epoch != shown:
                shown = epoch
                print(f"  {label}: epoch {epoch[0]}/{epoch[1]} ({time.time() - start:.0f} s)", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({log}):\n{open(log).read()[-3000:]}")
    return time.time() - start


def bundle_command(configs: List[str], root: str, overrides: Dict) -> List[str]:
    """``python -m monai.bundle run`` of ``configs`` (later ones override earlier ones)."""
    files = configs[0] if len(configs) == 1 else json.dumps(configs)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", root]
    for k, v in overrides.items():
        cmd += [f"--{k}", json.dumps(v) if isinstance(v, (list, bool, dict)) else str(v)]
    return cmd


def segmentation_metrics(out: str) -> Dict[str, float]:
    """Mean Dice / clDice and the number of frames of a vessel segmentation evaluate run
    (its ``metrics.csv`` and ``val_mean_dice_raw.csv`` in ``out``)."""
    values = {}
    for line in open(os.path.join(out, "metrics.csv")):
        name, _, value = line.strip().replace("\t", ",").partition(",")
        if value:
            values[name] = float(value)
    n = sum(1 for _ in open(os.path.join(out, "val_mean_dice_raw.csv"))) - 1
    return {"dice": values.get("val_mean_dice"), "cldice": values.get("val_cldice"), "n": n}


def classical_metrics(csv_path: str) -> Dict[str, float]:
    """Mean Dice / clDice and the number of frames of an ``apps.classical --csv`` file."""
    import csv

    rows = list(csv.DictReader(open(csv_path)))
    return {"dice": sum(float(r["dice"]) for r in rows) / len(rows), "cldice": sum(float(r["cldice"]) for r in rows) / len(rows), "n": len(rows)}


class Steps:
    """Named steps that are skipped once they have finished (so a run resumes). A step counts as
    finished by a marker written after its command succeeded, not by its output file: a
    training run writes its best checkpoint long before it ends."""

    def __init__(self, out: str):
        self.out = os.path.abspath(out)
        self.timings: Dict[str, float] = {}

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def run(self, name: str, done_file: str, cmd: List[str]) -> None:
        marker = self.path("logs", f"{name}.done")
        if os.path.exists(marker) and os.path.exists(done_file):
            print(f"[skip] {name}: finished before ({done_file})", flush=True)
            return
        self.timings[name] = run_logged(cmd, self.path("logs", f"{name}.log"), label=name)
        if not os.path.exists(done_file):
            raise RuntimeError(f"step {name} finished without writing {done_file}; see {self.path('logs', name + '.log')}")
        open(marker, "w").write(f"{self.timings[name]:.1f} s\n")
        print(f"[done] {name} in {self.timings[name] / 60:.1f} min", flush=True)
