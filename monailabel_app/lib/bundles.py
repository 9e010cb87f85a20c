"""The repository's bundles as MONAI Label models, found locally (no zoo download).

Each model works in its own copy of a bundle under the app's model folder: the configs are
copied from ``bundles/`` at every start (so code updates reach it) and ``models/`` keeps the
weights that training writes, so fine-tuned weights never land in the source tree.

``--conf <model>_config`` gives bundle overrides (a JSON object or a JSON file), the same ids
as on the bundle's command line, e.g. ``{"preset": "vit_s16", "image_size": 128}``; they apply
to inference, scoring and training alike. ``--conf <model>_checkpoint`` is a trained
``model.pt`` to start from when the working copy has none yet.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from monai.bundle import ConfigParser
from monailabel.interfaces.config import TaskConfig

logger = logging.getLogger(__name__)

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def bundle_overrides(conf: Dict[str, str], model: str) -> Dict[str, Any]:
    key = f"{model}_config"
    raw = (conf or {}).get(key, "")
    if not raw:
        return {}
    source = raw if os.path.isfile(raw) else f"--conf {key}"
    try:
        value = json.loads(Path(raw).read_text() if os.path.isfile(raw) else raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: expected a JSON object of bundle overrides or a JSON file holding one ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{source}: expected a JSON object of bundle overrides, got {type(value).__name__}")
    return value


def working_bundle(model_dir: str, bundle: str, model: str) -> str:
    """``model_dir/<model>``: the bundle's configs, docs and license, and a models/ folder."""
    source, dest = BUNDLES / bundle, Path(model_dir) / model
    if not (source / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"{source}: not a bundle of this repository (configs/metadata.json missing)")
    for part in ("configs", "docs"):
        if (source / part).is_dir():
            shutil.copytree(source / part, dest / part, dirs_exist_ok=True)
    if (source / "LICENSE").is_file():
        shutil.copy(source / "LICENSE", dest / "LICENSE")
    (dest / "models").mkdir(parents=True, exist_ok=True)
    return str(dest)


def parse_bundle_config(bundle_path: str, config: str, overrides: Dict[str, Any]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_path, "configs", config))
    parser["bundle_root"] = bundle_path
    parser.update(overrides)
    return parser


def _save_atomic(state: dict, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".pt.tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def prepare_checkpoint(bundle_path: str, overrides: Dict[str, Any], checkpoint: Optional[str] = None) -> str:
    """Make sure ``models/model.pt`` exists and fits the configured network; returns where the
    weights came from. A fresh working copy takes ``checkpoint``, or else the network as the
    train config builds it (its pre-trained encoder if one is configured): an untrained start
    that the train task then fine-tunes on the annotators' labels."""
    target = os.path.join(bundle_path, "models", "model.pt")
    network = parse_bundle_config(bundle_path, "train.json", overrides).get_parsed_content("network_def")
    if os.path.isfile(target):
        origin = f"kept {target}"
    elif checkpoint:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"{checkpoint}: checkpoint not found (--conf {Path(bundle_path).name}_checkpoint)")
        _save_atomic(torch.load(checkpoint, map_location="cpu", weights_only=True), target)
        origin = f"copied from {checkpoint}"
    else:
        _save_atomic(network.state_dict(), target)
        origin = "built by the train config (not trained on labels yet)"
        logger.warning(f"{target}: no trained weights yet; the model starts {origin}")
    state = torch.load(target, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{target}: the weights do not fit the configured network; give the sizes it was trained with in "
            f"--conf {Path(bundle_path).name}_config (now {json.dumps(overrides)}): {str(e)[:400]}"
        ) from e
    return origin


class BundleTaskConfig(TaskConfig):
    """A ``TaskConfig`` whose model is a working copy of ``bundles/<BUNDLE>``: overrides from
    ``--conf <name>_config``, starting weights from ``--conf <name>_checkpoint``."""

    BUNDLE = ""

    def init(self, name, model_dir, conf, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.overrides = bundle_overrides(conf, name)
        self.bundle_path = working_bundle(model_dir, self.BUNDLE, name)
        origin = prepare_checkpoint(self.bundle_path, self.overrides, conf.get(f"{name}_checkpoint"))
        logger.info(f"{name}: {self.bundle_path}; weights {origin}; overrides {self.overrides}")
