"""Checkpoints that carry what built them.

A ``model.pt`` written by a bundle holds, beside the weights (``"model"``), a ``"network_spec"`` entry:

    {"config": {"_target_": "angiokit.networks.ViTSegmenter", "preset": "vit_s16", "hidden_size": 128, ...},
     "settings": {"image_size": 128, "num_classes": 2},      # bundle ids the network was trained with
     "bundle_version": "0.1.0", "angiokit_version": "0.1.0"}

``config`` is a MONAI bundle component (``_target_`` + constructor arguments), so any consumer -
an evaluate / inference config, the MONAI Label app, ``ckpt_export``, an app - rebuilds the
network from the checkpoint alone, and a size is named once, when training starts. Checkpoints
written before this format (a bare state dict, or ``{"model": ...}``) still load: the consumer's
own configuration builds the network, and the log says so.

MONAI's ``CheckpointSaver`` saves objects with a ``state_dict``: ``NetworkSpec`` is one, so a
config adds ``"network_spec": "$angiokit.networks.NetworkSpec(@network_def, ...)"`` to its
``save_dict``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from typing import Any, Callable, Dict, Optional

import torch

logger = logging.getLogger(__name__)

SPEC_KEY = "network_spec"
"""Where a checkpoint dict keeps the network's description (beside ``"model"``, the weights)."""

# arguments that point at files used once at construction (their weights are in the checkpoint)
NOT_RECORDED = ("pretrained_encoder", "pretrained_format", "init_checkpoint")


def records_constructor(cls=None, *, exclude=()):
    """Class decorator: instances get ``constructor``, the ``_target_`` component (class path +
    bound arguments, defaults included) that rebuilds them. A class may refine it (e.g. sizes
    adopted from a pre-trained encoder) by updating ``self.constructor`` in its ``__init__``."""

    def decorate(klass):
        original = klass.__init__
        signature = inspect.signature(original)
        skipped = set(NOT_RECORDED) | set(exclude)

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    recorded.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL and name not in skipped:
                    recorded[name] = value
            if not hasattr(self, "_recording_constructor"):  # the outermost decorated class records
                object.__setattr__(self, "_recording_constructor", True)
                try:
                    config = {"_target_": _public_path(klass), **_plain(recorded)}
                except TypeError as e:  # e.g. a module passed in: only refused if a checkpoint is written
                    config = str(e)
                object.__setattr__(self, "constructor", config)
            original(self, *args, **kwargs)

        klass.__init__ = __init__
        return klass

    return decorate(cls) if cls is not None else decorate


def update_constructor(module: torch.nn.Module, **values) -> None:
    """Record what ``module`` resolved at construction (e.g. sizes read from a pre-trained
    encoder), so a checkpoint rebuilds it without that file."""
    if isinstance(getattr(module, "constructor", None), dict):
        module.constructor.update(_plain(values))


def _public_path(klass) -> str:
    """``angiokit.networks.NAME`` for angiokit's networks (all exported there), so a checkpoint
    survives a move between modules; the full module path for any other class."""
    if klass.__module__.startswith("angiokit.networks."):
        return f"angiokit.networks.{klass.__qualname__}"
    return f"{klass.__module__}.{klass.__qualname__}"


def _plain(value: Any) -> Any:
    """Tuples to lists (JSON / ``weights_only`` friendly); anything but plain data is refused."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a network argument of type {type(value).__name__} cannot be recorded in a checkpoint ({value!r})")


def network_config(network: torch.nn.Module) -> Dict[str, Any]:
    """The ``_target_`` component that rebuilds ``network`` (unwrapping DDP)."""
    network = getattr(network, "module", network)
    config = getattr(network, "constructor", None)
    if config is None:
        raise TypeError(f"{type(network).__name__} does not record its constructor; decorate it with angiokit.networks.records_constructor")
    if isinstance(config, str):
        raise TypeError(f"{type(network).__name__} cannot be described in a checkpoint: {config}")
    return dict(config)


class NetworkSpec:
    """What built a network, as an entry of a checkpoint: give it to MONAI's ``CheckpointSaver``
    (``save_dict``) or to ``save_checkpoint``. ``settings`` are the bundle ids the network was
    trained with that live outside its constructor (``image_size``, ``num_classes``, ...)."""

    def __init__(self, network: torch.nn.Module, bundle_version: Optional[str] = None, **settings):
        self.network, self.bundle_version, self.settings = network, bundle_version, settings

    def state_dict(self) -> Dict[str, Any]:
        import angiokit

        return {"config": network_config(self.network), "settings": _plain(self.settings), "bundle_version": self.bundle_version, "angiokit_version": angiokit.__version__}

    def load_state_dict(self, state: Dict[str, Any]) -> None:  # the network is built from it, not loaded into it
        pass


def save_checkpoint(network: torch.nn.Module, path: str, bundle_version: Optional[str] = None, **settings) -> str:
    """``{"model": weights, "network_spec": spec}`` to ``path`` (written to a temporary file, then renamed)."""
    from ..data.writers import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    module = getattr(network, "module", network)
    with atomic_path(path) as tmp:
        torch.save({"model": module.state_dict(), SPEC_KEY: NetworkSpec(module, bundle_version, **settings).state_dict()}, tmp)
    return path


def read_network_spec(path: str) -> Optional[Dict[str, Any]]:
    """The ``network_spec`` entry of a checkpoint, or None when it has none (an older checkpoint) or
    the file does not exist."""
    if not path or not os.path.isfile(path):
        return None
    return _read_spec(os.path.abspath(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=8)
def _read_spec(path: str, mtime: float) -> Optional[Dict[str, Any]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: name it
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    spec = state.get(SPEC_KEY) if isinstance(state, dict) else None
    if spec is not None and not (isinstance(spec, dict) and isinstance(spec.get("config"), dict) and "_target_" in spec["config"]):
        raise ValueError(f"{path}: its '{SPEC_KEY}' entry is not a network description (expected {{'config': {{'_target_': ...}}, ...}})")
    return spec


def checkpoint_setting(path: str, name: str, default: Any = None) -> Any:
    """A setting the checkpoint's network was trained with (``settings``, then the constructor's
    arguments), or ``default`` for a checkpoint that does not carry it."""
    spec = read_network_spec(path)
    if spec is None:
        return default
    if name in spec.get("settings", {}):
        return spec["settings"][name]
    return spec["config"].get(name, default)


def build_from_config(config: Dict[str, Any]) -> torch.nn.Module:
    """Instantiate a ``_target_`` component (as a bundle config would)."""
    from monai.utils import instantiate

    config = dict(config)
    target = config.pop("_target_")
    return instantiate(target, "default", **config)


def accepted_arguments(target: Any, values: Dict[str, Any]) -> Dict[str, Any]:
    """The entries of ``values`` that the class or function ``target`` takes as arguments."""
    from pydoc import locate  # what monai.utils.instantiate uses to find a _target_

    component = locate(target) if isinstance(target, str) else getattr(target, "func", target)
    parameters = inspect.signature(component).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(values)
    return {k: v for k, v in values.items() if k in parameters}


def network_from_checkpoint(path: str, fallback: Optional[Callable[..., torch.nn.Module]] = None, **overrides) -> torch.nn.Module:
    """The network described by checkpoint ``path`` (weights not loaded: the caller's loader
    does that). ``overrides`` change run-time arguments the network takes (e.g. ``dropout`` for
    MC-dropout scoring) and are ignored by networks without them. A checkpoint without a
    description (written before it was recorded), or no checkpoint yet, builds with
    ``fallback`` (e.g. the config's ``network_def`` in callable mode), saying so."""
    spec = read_network_spec(path)
    if spec is not None:
        config = spec["config"]
        config = {**config, **accepted_arguments(config["_target_"], overrides)}
        args = ", ".join(f"{k}={v}" for k, v in config.items() if k != "_target_" and not isinstance(v, (dict, list)))
        logger.info(f"{path}: building {config['_target_']}({args}) as recorded in the checkpoint")
        return build_from_config(config)
    if fallback is None:
        raise ValueError(f"{path}: the checkpoint does not record its network and no configured network was given")
    if path and os.path.isfile(path):
        logger.warning(
            f"{path}: the checkpoint does not record its network (written before angiokit 0.2); building the configured one - "
            "give the sizes it was trained with as overrides (e.g. --preset, --image_size) if its weights do not fit"
        )
    return fallback(**accepted_arguments(fallback, overrides))


def load_network(path: str, device: str | torch.device = "cpu", fallback: Optional[Callable[..., torch.nn.Module]] = None, **overrides) -> torch.nn.Module:
    """The network of checkpoint ``path`` with its weights, in eval mode, on ``device``."""
    network = network_from_checkpoint(path, fallback, **overrides)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the network built for them: {str(e)[:400]}") from e
    return network.to(device).eval()
