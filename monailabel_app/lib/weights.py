"""The weights a model serves: ``models/model.pt`` of its working copy, and where they came from.

A checkpoint written by the bundles carries its network (``angiokit.networks.checkpoint``), so
the app builds what it serves and what it trains from the checkpoint alone. Beside the weights,
``models/model_source.json`` records their origin::

    {"source": "checkpoint" | "label_free" | "classical" | "untrained", "checkpoint": PATH, "sha256": HEX,
     "weights": {"size": N, "mtime_ns": T}}      # model.pt as written at the start

- ``--conf <model>_checkpoint PATH`` that the working copy did not start from (another sha256)
  replaces its weights (the replaced ones are kept in ``models/replaced/`` when they were trained
  here); the same checkpoint again keeps the annotators' fine-tuned weights.
- No checkpoint and no weights yet: the task config's first start (the vessel segmenter: its
  label-free model when there is one, else the classical Frangi + Otsu segmenter; the quality
  scorer: its untrained network).
- ``weights`` tells the weights written at the start from weights trained here since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from angiokit.data.writers import atomic_path
from angiokit.networks import PRESETS, read_network_spec

logger = logging.getLogger(__name__)

SOURCE_FILE = "model_source.json"
CLASSICAL_TARGET = "angiokit.networks.VesselnessThresholdSegmenter"


def weights_path(bundle_path: str) -> str:
    return os.path.join(bundle_path, "models", "model.pt")


def _source_path(bundle_path: str) -> str:
    return os.path.join(bundle_path, "models", SOURCE_FILE)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_digests: Dict[tuple, str] = {}
_has_weights: Dict[tuple, bool] = {}


def weights_sha256(path: str) -> Optional[str]:
    """sha256 of ``path``, computed once per version of the file (size, modification time)."""
    fingerprint = _fingerprint(path)
    if fingerprint is None:
        return None
    key = (os.path.realpath(path), fingerprint["size"], fingerprint["mtime_ns"])
    if key not in _digests:
        _digests[key] = _sha256(path)
    return _digests[key]


def _fingerprint(path: str) -> Optional[Dict[str, int]]:
    if not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_source(bundle_path: str) -> Dict[str, Any]:
    """The working copy's origin record, {} when it has none (weights of an older app version)."""
    path = _source_path(bundle_path)
    if not os.path.isfile(path):
        return {}
    try:
        return json.loads(open(path).read())
    except json.JSONDecodeError as e:
        logger.warning(f"{path}: unreadable origin record ({e}); treating the weights as of unknown origin")
        return {}


def _write_source(bundle_path: str, source: str, checkpoint: Optional[str] = None, sha256: Optional[str] = None) -> None:
    record = {"source": source, "checkpoint": checkpoint, "sha256": sha256, "weights": _fingerprint(weights_path(bundle_path))}
    with atomic_path(_source_path(bundle_path)) as tmp:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)


def trained_here(bundle_path: str) -> bool:
    """Whether the weights changed since the start wrote them (a training of the app), or are of
    unknown origin (no record)."""
    record = read_source(bundle_path)
    return not record or record.get("weights") != _fingerprint(weights_path(bundle_path))


def has_weights(path: str) -> bool:
    """Whether a checkpoint holds any weight to fine-tune (the classical segmenter holds none).
    Remembered per version of the file: every infer response reports it."""
    fingerprint = _fingerprint(path)
    key = (os.path.realpath(path), fingerprint and fingerprint["size"], fingerprint and fingerprint["mtime_ns"])
    if key not in _has_weights:
        try:  # memory-mapped: a ViT-B checkpoint is not read into memory to look at it
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a checkpoint in the legacy (pre-zip) format cannot be mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        _has_weights[key] = any(torch.is_tensor(v) and v.numel() for v in state.values())
    return _has_weights[key]


def _set_aside(bundle_path: str) -> Optional[str]:
    """Move weights trained here out of the way of a new checkpoint, so no annotator's training
    is lost (``models/replaced/`` is not a model MONAI Label offers: it lists ``models/*.pt``)."""
    target = weights_path(bundle_path)
    if not os.path.isfile(target) or not trained_here(bundle_path):
        return None
    folder = os.path.join(bundle_path, "models", "replaced")
    os.makedirs(folder, exist_ok=True)
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
    while os.path.exists(kept := os.path.join(folder, f"model-{stamp}{f'-{n}' if n else ''}.pt")):
        n += 1  # two replacements within a second: neither overwrites the other
    os.replace(target, kept)
    return kept


def _take_checkpoint(bundle_path: str, checkpoint: str, sha256: str, source: str = "checkpoint") -> None:
    with atomic_path(weights_path(bundle_path)) as tmp:
        shutil.copyfile(checkpoint, tmp)
    _write_source(bundle_path, source, checkpoint, sha256)


def prepare_weights(bundle_path: str, model: str, checkpoint: Optional[str], first_start: Callable[[str], Union[str, Tuple[str, str]]]) -> str:
    """Make ``models/model.pt`` of the working copy hold what the model should serve; returns
    where its weights came from (for the log). ``first_start(path)`` writes the weights of a
    working copy that has none and no checkpoint was given and names their source, or names a
    checkpoint to start from instead: ``(source, checkpoint)``, copied here."""
    target = weights_path(bundle_path)
    if checkpoint:
        checkpoint = os.path.abspath(checkpoint)
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found (--conf {model}_checkpoint)")
        sha256 = _sha256(checkpoint)
        if os.path.isfile(target) and read_source(bundle_path).get("sha256") == sha256:
            return f"kept {target} (started from {checkpoint}{', trained here since' if trained_here(bundle_path) else ''})"
        kept = _set_aside(bundle_path)
        _take_checkpoint(bundle_path, checkpoint, sha256)
        logger.warning(
            f"{model}: {target} replaced by the newly given checkpoint {checkpoint} (sha256 {sha256[:12]})"
            + (f"; the weights trained here before are kept in {kept}" if kept else "")
        )
        return f"copied from {checkpoint}"
    if os.path.isfile(target):
        return f"kept {target}"
    source = first_start(target)
    if isinstance(source, tuple):
        source, copied = source
        copied = os.path.abspath(copied)
        _take_checkpoint(bundle_path, copied, _sha256(copied), source)
        return f"first start: {source} from {copied}"
    _write_source(bundle_path, source)
    return f"first start: {source}"


# ---- what a checkpoint records, for the configs and for /info ---------------------------------


def recorded_overrides(bundle_path: str) -> Dict[str, Any]:
    """Bundle overrides that make a train config train the network of the working copy's
    checkpoint: ``network_def`` as recorded and its settings (``image_size``, ...); {} for a
    checkpoint that records none (an older one: the configured network) or has no weights to
    fine-tune (the classical first start: the configured network, from its initialisation)."""
    target = weights_path(bundle_path)
    spec = read_network_spec(target)
    if spec is None or not has_weights(target):
        return {}
    return {"network_def": dict(spec["config"]), **spec.get("settings", {})}


def without_recorded(bundle_path: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """``overrides`` less those of what the working copy's checkpoint records (its network, its
    settings): the checkpoint's own values win, so what is served and trained is the network its
    weights belong to. Unchanged for a checkpoint that records nothing."""
    spec = read_network_spec(weights_path(bundle_path))
    if spec is None:
        return dict(overrides)
    recorded = set(spec.get("settings", {})) | {"preset"}
    dropped = [k for k in overrides if k in recorded or k.split("#")[0] == "network_def"]
    if dropped:
        logger.info(f"{bundle_path}: overrides {dropped} not applied: {weights_path(bundle_path)} records its network ({network_name(spec)})")
    return {k: v for k, v in overrides.items() if k not in dropped}


def network_name(spec: Dict[str, Any]) -> str:
    """E.g. ``ViTSegmenter (vit_cpu, 128 px)``: class, named size (or width and depth), input size."""
    config = spec["config"]
    name = config["_target_"].rsplit(".", 1)[-1]
    details = []
    size = {k: config[k] for k in ("hidden_size", "mlp_dim", "num_layers", "num_heads") if k in config}
    if size:
        preset = next((p for p, values in PRESETS.items() if values == size), None)
        details.append(preset or f"width {size.get('hidden_size')}, {size.get('num_layers')} layers")
    image_size = spec.get("settings", {}).get("image_size", config.get("img_size"))
    if image_size:
        details.append(f"{image_size} px")
    return f"{name} ({', '.join(details)})" if details else name


def describe_weights(bundle_path: str) -> str:
    """What the model serves, for ``/info``: e.g. "classical Frangi + Otsu (no training yet)",
    "trained ViTSegmenter (vit_cpu, 128 px) from PATH", "untrained CASIQA (vit_tiny, 32 px) ..."."""
    target = weights_path(bundle_path)
    if not os.path.isfile(target):
        return "no weights"
    spec = read_network_spec(target)
    record = read_source(bundle_path)
    if spec is not None and spec["config"]["_target_"] == CLASSICAL_TARGET:
        config = spec["config"]
        return f"classical {str(config.get('method', 'frangi')).capitalize()} + {str(config.get('threshold', 'otsu')).capitalize()} (no training yet)"
    name = network_name(spec) if spec is not None else "network of the configured sizes (its checkpoint does not record them)"
    if not record:
        return f"{name}, weights of {target} (origin not recorded)"
    if trained_here(bundle_path):
        started = f", starting from {record['checkpoint']}" if record.get("checkpoint") else ""
        return f"{name} trained here on the annotators' labels{started}"
    if record.get("source") == "untrained":
        return f"untrained {name} (no checkpoint given; train it on the annotators' labels)"
    if record.get("source") == "label_free":
        return f"label-free {name} from {record.get('checkpoint')} (synthetic and unlabelled real frames, no real label)"
    return f"trained {name} from {record.get('checkpoint')}"


def provenance(bundle_path: str) -> Dict[str, Any]:
    """Where the served model comes from, for ``/info`` and every infer response: what it is
    (``serving``), whether it learned anything (``trained``: False for the classical first start
    and an untrained network), the weights file and its sha256, the checkpoint the working copy
    started from and its sha256, and the versions of the bundle and angiokit that wrote it."""
    target = weights_path(bundle_path)
    spec = read_network_spec(target) if os.path.isfile(target) else None
    record = read_source(bundle_path)
    if not os.path.isfile(target):
        origin = "none"
    elif spec is not None and spec["config"]["_target_"] == CLASSICAL_TARGET:
        origin = "classical"
    elif not record:
        origin = "unknown"
    elif trained_here(bundle_path):
        origin = "trained here"
    else:
        origin = record.get("source", "unknown")
    return {
        "serving": describe_weights(bundle_path),
        "source": origin,
        "trained": origin in ("checkpoint", "label_free", "trained here", "unknown") and os.path.isfile(target) and has_weights(target),
        "weights": target,
        "sha256": weights_sha256(target),
        "checkpoint": record.get("checkpoint"),
        "checkpoint_sha256": record.get("sha256"),
        "bundle_version": (spec or {}).get("bundle_version"),
        "angiokit_version": (spec or {}).get("angiokit_version"),
    }
