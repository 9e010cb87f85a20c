"""What both infer tasks add to MONAI Label's bundle infer task: the network the working copy's
checkpoint records, rebuilt when that changes, and ``/info`` saying which model is served."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import torch
from monailabel.tasks.infer.bundle import BundleInferTask

from angiokit.networks import read_network_spec
from angiokit.networks.unet_adapter import sample_dropout_only

from ..bundles import ServedNetworkConstants, parse_bundle_config
from ..weights import provenance, weights_path, without_recorded


class AngioBundleInfer(BundleInferTask):
    """``dropout`` > 0 (MC-dropout scoring) sets the configs' ``dropout`` id, which reaches the
    network built from the checkpoint (MONAI Label would set ``network_def#dropout``, which only
    the fallback network reads)."""

    def __init__(self, path: str, conf: Dict[str, str], overrides: Dict[str, Any], dropout: float = 0.0, **kwargs):
        # read by _load_bundle_config, during the base constructor
        self.overrides = {**overrides, "dropout": float(dropout)} if dropout > 0 else dict(overrides)
        super().__init__(path, conf, const=ServedNetworkConstants(), load_strict=True, **kwargs)
        self._built_for = self._spec_key()

    def _get_network(self, device, data):
        network = super()._get_network(device, data)
        # MC-dropout scoring (train_mode): sample dropout only, never batch norm in training mode
        scripted = isinstance(network, torch.jit.ScriptModule)  # its submodules cannot be told apart: left as MONAI Label sets it
        return sample_dropout_only(network) if self.train_mode and not scripted else network

    def _load_bundle_config(self, path, config):
        return parse_bundle_config(path, os.path.basename(config), without_recorded(path, self.overrides))

    def _spec_key(self) -> str:
        return json.dumps(read_network_spec(weights_path(self.bundle_path)), sort_keys=True, default=str)

    def __call__(self, request, callbacks=None):
        # MONAI Label keeps the network built at start and reloads only its weights when model.pt
        # changes; a training that replaces the classical first start by the ViT changes the
        # network itself and its settings (image_size): parse the config again, build the new one
        key = self._spec_key()
        if key != self._built_for:
            self.bundle_config = self._load_bundle_config(self.bundle_path, self.bundle_config_path)
            self.network = self.bundle_config.get_parsed_content(self.const.key_network_def(), instantiate=True)
            self.clear_cache()
            self._built_for = key
        label, result = super().__call__(request, callbacks)
        if isinstance(result, dict):  # which model made this label
            result["network"] = type(self.network).__name__
            result["model"] = provenance(self.bundle_path)
        return label, result

    def info(self) -> Dict[str, Any]:
        i = super().info()
        i["provenance"] = provenance(self.bundle_path)
        i["serving"] = i["provenance"]["serving"]
        i["description"] = f"Serving {i['serving']}. {i.get('description') or ''}".strip()
        return i
