"""The repository's bundles as MONAI Label models, found locally (no zoo download).

Each model works in its own copy of a bundle under the app's model folder: the configs are
copied from ``bundles/`` at every start (so code updates reach it) and ``models/`` keeps the
weights that training writes, so fine-tuned weights never land in the source tree.

The network a model serves and trains is the one its checkpoint records (``lib/weights.py``):
``--conf <model>_checkpoint PATH`` needs no size flags. ``--conf <model>_config`` gives bundle
overrides (a JSON object or a JSON file, the ids of the bundle's command line): what a first
training trains (e.g. ``{"preset": "vit_cpu", "image_size": 128}``), training options (e.g.
``{"batch_size": 4}``), and the sizes of an older checkpoint that does not record them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict

import torch
from monai.bundle import ConfigParser
from monailabel.interfaces.config import TaskConfig
from monailabel.tasks.infer.bundle import BundleConstants

from angiokit.networks import read_network_spec, save_checkpoint

from .weights import describe_weights, prepare_weights, weights_path, without_recorded

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


def bundle_version(bundle_path: str) -> str:
    with open(os.path.join(bundle_path, "configs", "metadata.json")) as f:
        return json.load(f)["version"]


def parse_bundle_config(bundle_path: str, config: str, overrides: Dict[str, Any]) -> ConfigParser:
    """A config of the working copy with its metadata (``@_meta_#version``) and ``overrides``."""
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle_path, "configs", config))
    parser.read_meta(os.path.join(bundle_path, "configs", "metadata.json"))
    parser["bundle_root"] = bundle_path
    parser.update(overrides)
    return parser


class ServedNetworkConstants(BundleConstants):
    """MONAI Label's infer task builds ``network_def``; the inference configs build the served
    network as ``network``, from the checkpoint (``network_def`` is only the fallback for
    checkpoints that do not record their network)."""

    def key_network_def(self) -> str:
        return "network"


def check_weights_fit(bundle_path: str, model: str, overrides: Dict[str, Any]) -> None:
    """Build the network as inference will and load the weights into it, so a checkpoint that
    does not fit stops the start with a message instead of failing at the first request."""
    target = weights_path(bundle_path)
    parser = parse_bundle_config(bundle_path, "inference.json", without_recorded(bundle_path, overrides))
    parser["device"] = "$torch.device('cpu')"
    network = parser.get_parsed_content("network")
    state = torch.load(target, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        if read_network_spec(target) is None:
            raise ValueError(
                f"{target}: the checkpoint does not record its network (written before angiokit 0.2) and its weights do not fit "
                f"the configured one; give the sizes it was trained with in --conf {model}_config (now {json.dumps(overrides)}): {str(e)[:400]}"
            ) from e
        raise ValueError(f"{target}: the weights do not fit the network the checkpoint records: {str(e)[:400]}") from e


class BundleTaskConfig(TaskConfig):
    """A ``TaskConfig`` whose model is a working copy of ``bundles/<BUNDLE>``: starting weights
    from ``--conf <name>_checkpoint`` (or the first start's), overrides from
    ``--conf <name>_config``."""

    BUNDLE = ""

    def init(self, name, model_dir, conf, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.overrides = bundle_overrides(conf, name)
        self.bundle_path = working_bundle(model_dir, self.BUNDLE, name)
        origin = prepare_weights(self.bundle_path, name, conf.get(f"{name}_checkpoint"), self.first_start)
        check_weights_fit(self.bundle_path, name, self.overrides)
        logger.info(f"{name}: {self.bundle_path}; weights {origin}; serving {describe_weights(self.bundle_path)}; overrides {self.overrides}")

    def first_start(self, path: str) -> str:
        """Weights of a working copy started with no checkpoint: the network as the train config
        builds it (its pre-trained encoder if one is configured), untrained, with what built it.
        Returns their source for the origin record."""
        spec = parse_bundle_config(self.bundle_path, "train.json", self.overrides).get_parsed_content("network_spec")
        save_checkpoint(spec.network, path, spec.bundle_version, **spec.settings)
        logger.warning(f"{path}: no checkpoint given; {self.name} starts untrained (train it on the annotators' labels)")
        return "untrained"
