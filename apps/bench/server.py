"""The annotation server under a bounded concurrent mix, on loopback (issue 25).

A real ``monailabel start_server`` of this app on synthetic studies, first start (the classical
Frangi + Otsu segmenter at 512 px, as a new site gets it; ``--checkpoint`` serves a trained one):

- ``/info`` latency idle (the baseline of this run), then while a long cine is segmented
  (``cine_frames`` frames): p50 / p95 and their ratio to idle;
- ``infers`` concurrent ``/infer/vessel_seg`` requests on single frames: latency p50 / p95;
- ``uploads`` concurrent label uploads during a cine inference: how many answered 200 and how
  many labels are missing or differ from what was sent afterwards (lost).

    python -m apps.bench server [--cine_frames 96] [--infers 20] [--uploads 15]
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from angiokit.data import read_angiogram, to_uint, write_dicom_xa, write_mask_png, write_png
from angiokit.data.synthetic import SynthConfig, synthesize

from apps._server import serve_app

from .common import emit, machine_line

CPU = json.dumps({"device": "cpu"})


def make_studies(folder: Path, frames: int, size: int, cine_frames: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """``frame<i>.png`` (i < frames) and ``cine.dcm`` of ``cine_frames`` frames in ``folder``;
    returns the vessel masks of the frames {id: mask}."""
    truth = {}
    for i in range(frames):
        s = synthesize(SynthConfig(size=size), seed=seed + i)
        write_png(folder / f"frame{i}.png", to_uint(s.image, 8)[0])
        truth[f"frame{i}"] = (s.vessel[0] > 0).astype(np.uint8)
    if cine_frames:
        s = synthesize(SynthConfig(size=size, frames=cine_frames), seed=seed + 1000)
        write_dicom_xa(folder / "cine.dcm", to_uint(s.image, 8), 0.3, 66.7)
    return truth


def percentiles(seconds: List[float]) -> Tuple[float, float]:
    return float(np.percentile(seconds, 50)), float(np.percentile(seconds, 95))


def timed(fn: Callable[[], object]) -> Tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def infer(url: str, study: str, timeout: float = 600):
    import requests

    return requests.post(f"{url}/infer/vessel_seg", params={"image": study, "output": "json"}, data={"params": CPU}, timeout=timeout)


def info_latencies(url: str, n: int) -> List[float]:
    import requests

    return [timed(lambda: requests.get(f"{url}/info/", timeout=600))[0] for _ in range(n)]


def while_inferring(url: str, study: str, probe: Callable[[], object], interval: float = 0.1, start_after: float = 0.5) -> Dict[str, object]:
    """Run ``probe`` repeatedly while ``study`` is segmented. Returns the infer's status and
    seconds, the probes' seconds and results, and how many probes returned before the infer did."""
    outcome: Dict[str, object] = {}

    def run_infer():
        outcome["seconds"], response = timed(lambda: infer(url, study))
        outcome["status"] = response.status_code
        outcome["done_at"] = time.perf_counter()

    thread = threading.Thread(target=run_infer)
    thread.start()
    time.sleep(start_after)  # the infer has begun
    seconds, results, returned_at = [], [], []
    while thread.is_alive():
        took, result = timed(probe)
        seconds.append(took)
        results.append(result)
        returned_at.append(time.perf_counter())
        time.sleep(interval)
    thread.join()
    outcome.update(probe_seconds=seconds, probe_results=results, probes_before_infer_done=sum(t < outcome["done_at"] for t in returned_at))
    return outcome


def concurrent(fns: List[Callable[[], object]]) -> List[Tuple[float, object]]:
    """All at once (one thread each); (seconds, result) of each."""
    with ThreadPoolExecutor(len(fns)) as pool:
        return list(pool.map(lambda fn: timed(fn), fns))


def upload_labels(url: str, labels: Dict[str, Path]) -> Callable[[], List[int]]:
    """A probe that sends every label at once (one thread each); returns the HTTP statuses."""
    import requests

    def put(image: str, path: Path) -> int:
        with open(path, "rb") as f:
            return requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"}, files={"label": (path.name, f)}, timeout=600).status_code

    return lambda: [r for _, r in concurrent([lambda i=i, p=p: put(i, p) for i, p in labels.items()])]


def lost_labels(studies: Path, sent: Dict[str, np.ndarray]) -> List[str]:
    """Ids whose stored final label is missing or differs from the mask sent."""
    lost = []
    for image, mask in sent.items():
        stored = studies / "labels" / "final" / f"{image}.png"
        if not stored.is_file() or not np.array_equal(read_angiogram(stored).frames[0] > 0, mask > 0):
            lost.append(image)
    return lost


def run(cine_frames: int = 96, size: int = 512, infers: int = 20, uploads: int = 15, checkpoint: Optional[str] = None, workdir: Optional[str] = None, threads: int = 0) -> None:
    """Prints the figures (seconds). ``threads``: torch threads of the server (0: its default)."""
    print(machine_line(), f"cine_frames={cine_frames} size={size} infers={infers} uploads={uploads}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        studies = root / "studies"
        studies.mkdir(parents=True, exist_ok=True)
        truth = make_studies(studies, max(infers, uploads), size, cine_frames)
        conf = {"models": "vessel_seg", "model_dir": str(root / "model")}
        if checkpoint:
            conf["vessel_seg_checkpoint"] = checkpoint
        env = {"OMP_NUM_THREADS": str(threads)} if threads else {k: "" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        with serve_app(root / "server", studies, conf, env=env) as (url, log):
            infer(url, "frame0")  # warm-up: the model is built at the first request
            idle = info_latencies(url, 20)
            cine_alone, _ = timed(lambda: infer(url, "cine"))
            mix = while_inferring(url, "cine", lambda: info_latencies(url, 1)[0])
            busy = mix["probe_seconds"]
            latencies = concurrent([lambda i=i: infer(url, f"frame{i % len(truth)}") for i in range(infers)])
            labels_dir = root / "labels"
            labels_dir.mkdir(exist_ok=True)
            sent = dict(list(truth.items())[:uploads])
            for image, mask in sent.items():
                write_mask_png(labels_dir / f"{image}.png", mask)
            upload = while_inferring(url, "cine", upload_labels(url, {i: labels_dir / f"{i}.png" for i in sent}), start_after=0.5)
            statuses = [s for batch in upload["probe_results"] for s in batch]
            figures = {
                "info_idle_p50_s": percentiles(idle)[0],
                "info_idle_p95_s": percentiles(idle)[1],
                "cine_infer_s": cine_alone,
                "info_during_infer_p50_s": percentiles(busy)[0],
                "info_during_infer_p95_s": percentiles(busy)[1],
                "info_during_infer_n": len(busy),
                "info_answered_before_infer_done": mix["probes_before_infer_done"],
                "info_p95_ratio_busy_over_idle": percentiles(busy)[1] / percentiles(idle)[1],
                "concurrent_infer_p50_s": percentiles([t for t, _ in latencies])[0],
                "concurrent_infer_p95_s": percentiles([t for t, _ in latencies])[1],
                "concurrent_infer_errors": sum(r.status_code != 200 for _, r in latencies),
                "label_uploads": len(statuses),
                "label_uploads_ok": sum(s == 200 for s in statuses),
                "labels_lost": len(lost_labels(studies, sent)),
            }
    emit(**figures)
