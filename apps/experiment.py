"""The experiment layer: what apps.demo, apps.compare and apps.iqa_benchmark are made of.

An experiment is a list of stages; a stage runs steps; a step is a real run of a shipped bundle
(``python -m monai.bundle run ...``, logged to ``OUT/logs/STEP.log``, skipped once it finished, so
an interrupted experiment resumes). Results are read back from the files the bundles write
(MetricsSaver CSVs, ``correlations.json``, ``reconstruction_metrics.json``, TensorBoard event
files), never from their logs; the logs only drive the progress display.

Sizes: a ViT's width and depth become bundle overrides through
``angiokit.networks.size_overrides`` (a named preset where one matches) and only where training
starts from nothing; a fine-tuning run adopts its encoder's sizes, and evaluation, inference and
export build the network from the checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("ANGIOKIT_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))

# the overlays on train.json (bundles/xa_vessel_seg/configs) that make each segmentation method
SEGMENTERS: Dict[str, List[str]] = {"vit": [], "unet": ["unet"], "dynunet": ["dynunet"], "frangi": ["frangi"]}

# MAE's decoder (512 wide, 8 blocks) costs more than a CPU-sized encoder: the CPU experiments
# pre-train with this one (the decoder is dropped after pre-training; no checkpoint consumer needs it)
SMALL_DECODER = {"network_def#decoder_hidden_size": 128, "network_def#decoder_num_layers": 2, "network_def#decoder_num_heads": 4, "network_def#decoder_mlp_dim": 512}

RECONSTRUCTION_METRICS = "reconstruction_metrics.json"


# ---- profiles and sizes ----------------------------------------------------------------------


def choose_profile(profiles: Mapping[str, Dict], name: str, given: Mapping[str, object]) -> Dict:
    """A copy of ``profiles[name]`` with the ``given`` values that are not None; a name the
    profile does not have is refused (a typo would otherwise be ignored silently)."""
    chosen = json.loads(json.dumps(profiles[name]))
    unknown = sorted(set(given) - set(chosen))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; the settings are {sorted(chosen)}")
    chosen.update({k: v for k, v in given.items() if v is not None})
    return chosen


def vit_overrides(width: int, depth: int) -> Dict[str, object]:
    """The overrides that train a ViT of that width and depth from nothing (the one place apps
    turn sizes into overrides: ``angiokit.networks.size_overrides``)."""
    from angiokit.networks import size_overrides

    return size_overrides(width, depth)


def warmup(epochs: int, fraction: int = 10) -> int:
    return max(1, int(epochs) // fraction)


# ---- running steps ---------------------------------------------------------------------------

EPOCH = re.compile(r"Epoch: (\d+)/(\d+)")


def last_epoch(log: str) -> Optional[Tuple[int, int]]:
    """(epoch, of) from the last "Epoch: e/N" line of a running trainer's log, or None: the
    progress display only (results are read from the files the runs write)."""
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
        f.write(f"$ {' '.join(shlex.quote(c) for c in cmd)}\n")
        f.flush()
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


def config_files(bundle: str, names: Iterable[str]) -> List[str]:
    """Paths of a shipped bundle's configs, e.g. ``config_files("xa_vessel_seg", ["train", "unet"])``."""
    return [os.path.join(REPO, "bundles", bundle, "configs", f"{n}.json") for n in names]


def bundle_command(configs: List[str], root: str, overrides: Mapping[str, object]) -> List[str]:
    """``python -m monai.bundle run`` of ``configs`` (later ones override earlier ones)."""
    files = configs[0] if len(configs) == 1 else json.dumps(configs)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", root]
    for k, v in overrides.items():
        cmd += [f"--{k}", json.dumps(v) if isinstance(v, (list, bool, dict)) else str(v)]
    return cmd


class Experiment:
    """Named steps under ``out`` that are skipped once they have finished, grouped in stages.
    A step counts as finished by a marker written after its command succeeded, not by its
    output file: a training run writes its best checkpoint long before it ends."""

    def __init__(self, out: str, stages: Sequence[str] = ()):
        self.out = os.path.abspath(out)
        self.stages = tuple(stages)
        self.timings: Dict[str, float] = {}

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def stage(self, name: str) -> None:
        print(f"\n=== [{self.stages.index(name) + 1}/{len(self.stages)}] {name} ({time.strftime('%H:%M:%S')}) ===", flush=True)

    def keep_settings(self, settings: Dict) -> None:
        """Finished steps are reused only by a run of the same settings: refuse another."""
        path = self.path("settings.json")
        if os.path.exists(path) and json.load(open(path)) != json.loads(json.dumps(settings)):
            raise ValueError(f"{self.out} holds a run with other sizes or data ({path}); use --fresh or another --out")
        write_json(path, settings)

    def run(self, name: str, done_file: str, cmd: List[str]) -> str:
        marker = self.path("logs", f"{name}.done")
        if os.path.exists(marker) and os.path.exists(done_file):
            print(f"[skip] {name}: finished before ({done_file})", flush=True)
            return done_file
        self.timings[name] = run_logged(cmd, self.path("logs", f"{name}.log"), label=name)
        if not os.path.exists(done_file):
            raise RuntimeError(f"step {name} finished without writing {done_file}; see {self.path('logs', name + '.log')}")
        with open(marker, "w") as f:
            f.write(f"{self.timings[name]:.1f} s\n")
        print(f"[done] {name} in {self.timings[name] / 60:.1f} min", flush=True)
        return done_file

    def bundle(self, name: str, bundle: str, configs: Sequence[str], root: str, overrides: Mapping[str, object], done: str) -> str:
        """Step ``name``: a bundle run with ``bundle_root`` ``root``; finished when ``done``
        (relative to ``root``) exists. Returns the path of ``done``."""
        root = self.path(root)
        return self.run(name, os.path.join(root, done), bundle_command(config_files(bundle, configs), root, overrides))

    # ---- VasoMIM ----------------------------------------------------------------------------

    def pretrain(self, name: str, root: str, overrides: Mapping[str, object]) -> str:
        """A VasoMIM pre-training run; the path of its exported encoder."""
        return self.bundle(name, "vasomim_pretrain", ["train"], root, overrides, os.path.join("models", "encoder.pt"))

    def reconstruct(self, name: str, root: str, datalist: str, splits: Sequence[str], out: str = "eval_heldout") -> Optional[Dict]:
        """The pre-trained model on ``splits`` of ``datalist`` (its inference config): masked-patch
        errors of the model and of the mean predictor, and a reconstruction PNG per frame, in
        ``root/out``. Returns its reconstruction_metrics.json (None where it wrote none)."""
        overrides = {"datalist": datalist, "datalist_splits": list(splits), "output_dir": self.path(root, out)}
        self.bundle(name, "vasomim_pretrain", ["inference"], root, overrides, os.path.join(out, RECONSTRUCTION_METRICS))
        return read_reconstruction_metrics(self.path(root, out))

    # ---- vessel segmentation -----------------------------------------------------------------

    def train_segmenter(self, name: str, root: str, method: str, overrides: Mapping[str, object]) -> str:
        """Train ``method`` (a key of ``SEGMENTERS``; Frangi's "training" writes its model.pt);
        the checkpoint's path."""
        return self.bundle(name, "xa_vessel_seg", ["train"] + SEGMENTERS[method], root, overrides, os.path.join("models", "model.pt"))

    def evaluate_segmenter(self, name: str, root: str, method: str, datalist: str, test_name: str, split: str = "test") -> Dict[str, float]:
        """The evaluate config on ``split`` of ``datalist`` (no sizes: the network comes from the
        checkpoint); mean Dice / clDice and n read from its MetricsSaver files."""
        out = evaluation_dir(self.path(root), test_name)
        overrides = {"datalist": datalist, "eval_split": split, "output_dir": out, "num_workers": 0}
        self.bundle(name, "xa_vessel_seg", ["train"] + SEGMENTERS[method] + ["evaluate"], root, overrides, os.path.join(out, "metrics.csv"))
        return read_segmentation_metrics(out)

    def segment(self, name: str, root: str, images: Sequence[str], out: str) -> str:
        """The inference config on ``images``: a ``STEM_seg.png`` mask per image in ``root/out``."""
        out = self.path(root, out)
        last = os.path.splitext(os.path.basename(images[-1]))[0]
        overrides = {"input_glob": ",".join(images), "output_dir": out, "output_formats": ["png"]}
        self.bundle(name, "xa_vessel_seg", ["inference"], root, overrides, os.path.join(out, f"{last}_seg.png"))
        return out

    # ---- CAS-IQA -----------------------------------------------------------------------------

    def train_quality(self, name: str, root: str, overlays: Sequence[str], overrides: Mapping[str, object]) -> str:
        return self.bundle(name, "cas_iqa", ["train"] + list(overlays), root, overrides, os.path.join("models", "model.pt"))

    def evaluate_quality(self, name: str, root: str, overlays: Sequence[str], dataset_dir: str, out: str = "eval_test") -> Dict:
        """The evaluate config on the benchmark's test split; its correlations.json."""
        out = self.path(root, out)
        overrides = {"dataset_dir": dataset_dir, "output_dir": out, "num_workers": 0}
        self.bundle(name, "cas_iqa", ["train"] + list(overlays) + ["evaluate"], root, overrides, os.path.join(out, "correlations.json"))
        return read_json(os.path.join(out, "correlations.json"))


def evaluation_dir(root: str, test_name: str) -> str:
    return os.path.join(root, f"eval_{test_name}")


# ---- data ------------------------------------------------------------------------------------


def synthetic_set(folder: str, n: int, size: int, workers: int = 1) -> str:
    """A synthetic labelled set (``apps.synth``'s engine, seed 0) made once; its datalist."""
    from angiokit.data.synthetic import SynthConfig
    from angiokit.data.synthetic.export import write_synthetic_dataset

    datalist = os.path.join(folder, "datalist.json")
    if not os.path.exists(datalist):
        write_synthetic_dataset(folder, n, SynthConfig(size=size), seed=0, workers=workers)
    return datalist


def frames_set(source: str, folder: str, held_out: bool = False) -> str:
    """Unlabelled frames (PNG / JPEG, or XA DICOM cines) as a datalist made once; all of them
    pre-training material unless ``held_out`` (then the adapters' default split)."""
    from angiokit.data.adapters import prepare_dicom_frames, prepare_pairs

    datalist = os.path.join(folder, "datalist.json")
    if not os.path.exists(datalist):
        fractions = {} if held_out else {"val_fraction": 0.0, "test_fraction": 0.0}
        if any(f.lower().endswith(".dcm") for f in os.listdir(source)):
            prepare_dicom_frames(source, folder, **fractions)
        else:
            prepare_pairs(source, None, folder, **fractions)
    return datalist


def labelled_set(source: str, folder: str, split: Optional[str] = None) -> str:
    """A labelled set (``source``/images + ``source``/masks) made once; ``split``: a packaged
    split's name, by default the one packaged for this set (e.g. xcad_samples), else random."""
    from angiokit.data.adapters import prepare_pairs

    datalist = os.path.join(folder, "datalist.json")
    if not os.path.exists(datalist):
        prepare_pairs(os.path.join(source, "images"), os.path.join(source, "masks"), folder, split=split or packaged_split(source))
    return datalist


def packaged_split(folder: str) -> Optional[str]:
    """The fixed split packaged for a known set (named as its folder), else None."""
    from importlib import resources

    name = os.path.basename(os.path.normpath(folder))
    return name if resources.files("angiokit.data.splits").joinpath(f"{name}.json").is_file() else None


# ---- reading results -------------------------------------------------------------------------


def read_json(path: str) -> Dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: expected a JSON file written by a bundle run ({e})") from e


def csv_rows(path: str) -> List[List[str]]:
    """Rows of a CSV that MONAI's MetricsSaver wrote (comma- or tab-delimited: its ``delimiter``)."""
    with open(path) as f:
        lines = f.read().splitlines()
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    return [row for row in csv.reader(lines, delimiter=delimiter) if row]


def read_segmentation_metrics(out: str) -> Dict[str, float]:
    """Mean Dice / clDice and the number of frames of a vessel segmentation evaluation, from
    the MetricsSaver files in ``out``: metrics.csv (``name,value`` rows) and the per-image
    val_mean_dice_raw.csv."""
    path = os.path.join(out, "metrics.csv")
    summary = {row[0]: float(row[1]) for row in csv_rows(path) if len(row) >= 2 and row[1]}
    missing = {"val_mean_dice", "val_cldice"} - set(summary)
    if missing:
        raise ValueError(f"{path}: no {sorted(missing)} row(s); expected the segmentation bundle's MetricsSaver summary")
    return {"dice": summary["val_mean_dice"], "cldice": summary["val_cldice"], "n": len(read_per_image(out))}


def read_per_image(out: str, metric: str = "val_mean_dice") -> Dict[str, float]:
    """{image file: value} of a MetricsSaver ``METRIC_raw.csv`` (its ``mean`` column)."""
    path = os.path.join(out, f"{metric}_raw.csv")
    header, *rows = csv_rows(path)
    if "filename" not in header or "mean" not in header:
        raise ValueError(f"{path}: expected 'filename' and 'mean' columns, found {header}")
    name, mean = header.index("filename"), header.index("mean")
    return {r[name]: float(r[mean]) for r in rows}


def read_reconstruction_metrics(out: str) -> Optional[Dict]:
    """``out``/reconstruction_metrics.json (the VasoMIM inference config's masked-patch errors),
    or None where the run wrote none."""
    path = os.path.join(out, RECONSTRUCTION_METRICS)
    return read_json(path) if os.path.isfile(path) else None


def read_scalars(logdir: str) -> Dict[str, Dict[int, float]]:
    """{tag: {step: value}} of the TensorBoard event files a run wrote in ``logdir`` (a step
    logged twice, by a run that was restarted, keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: Dict[str, Dict[int, float]] = {}
    for name in sorted(f for f in os.listdir(logdir) if f.startswith("events.out.tfevents")) if os.path.isdir(logdir) else []:
        events = EventAccumulator(os.path.join(logdir, name), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in events.Scalars(tag)})
    return scalars


def epoch_means(series: Mapping[int, float], epochs: int) -> Dict[int, float]:
    """Per-epoch means of a per-iteration series (steps 1..N, N / ``epochs`` iterations an
    epoch, as MONAI's trainers log them); a per-epoch series (N == ``epochs``) is unchanged."""
    if not series:
        return {}
    per_epoch = max(series) / max(int(epochs), 1)
    sums: Dict[int, List[float]] = {}
    for step, value in series.items():
        sums.setdefault(max(1, math.ceil(step / per_epoch - 1e-9)), []).append(value)
    return {e: sum(v) / len(v) for e, v in sorted(sums.items())}


# ---- writing results -------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> List[str]:
    """Lines of a Markdown table (floats with three decimals, None as "-")."""

    def cell(v: object) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def write_text(path: str, text: str) -> str:
    from angiokit.data.writers import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path


def write_json(path: str, value: object) -> str:
    return write_text(path, json.dumps(value, indent=2))
