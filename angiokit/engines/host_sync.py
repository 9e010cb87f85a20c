"""Finding device-to-host synchronisations in a training step, on any device (CPU included).

On CUDA, an op whose result size or value the host must know (``.item()``, ``nonzero``, boolean
mask indexing, ``unique``, ``repeat_interleave`` without ``output_size``, ``bool(tensor)``)
waits for every kernel queued before it: the step stalls the GPU. On a CPU the same code runs
without a visible cost, so CI would never notice. ``HostSyncDetector`` is a ``TorchDispatchMode``
that raises ``HostSyncError`` at each such op, whatever the device, and at ``Tensor.numpy`` /
``Tensor.tolist`` (which on a CPU tensor do not reach the dispatcher, and on CUDA follow a copy
to the host); tests run one step of each bundle under it. Tensors the step makes on the host
(no tensor inputs) and values computed from them only are exempt: they are host tensors on
CUDA as well. (On a CPU run a factory given ``device=x.device`` looks like a host tensor too:
the detector misses a read of it.) PyTorch has ``torch.cuda.set_sync_debug_mode``, but only
on CUDA.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import weakref
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

_aten = torch.ops.aten

# ops whose output the host must read back (value or size)
SYNCING_OPS = {
    _aten._local_scalar_dense.default,  # .item(), float(t), int(t), bool(t)
    _aten.is_nonzero.default,
    _aten.equal.default,
    _aten.nonzero.default,
    _aten.nonzero_numpy.default,
    _aten.argwhere.default,
    _aten.masked_select.default,
    _aten.unique_dim.default,
    _aten._unique.default,
    _aten._unique2.default,
    _aten.unique_consecutive.default,
    _aten.unique_dim_consecutive.default,
    _aten.allclose.default,
}


class HostSyncError(RuntimeError):
    pass


def _in_optimizer_step() -> bool:
    """Whether the op comes from a ``torch.optim`` optimizer: its step counters are host tensors
    on every device (read on the host by design, no device sync; a fused or capturable
    optimizer does not read them at all)."""
    frame = sys._getframe(2)
    while frame is not None:
        if f"torch{os.sep}optim{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _caller() -> str:
    """The innermost frames outside torch, for the error: where the step asked for the value."""
    frames = [f for f in traceback.extract_stack()[:-3] if f"{os.sep}torch{os.sep}" not in f.filename]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(frames[-3:]))


def _is_bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in (indices or ()) if i is not None)


class HostSyncDetector(TorchDispatchMode):
    """Within ``with HostSyncDetector():``, an op that would make the host wait for the device
    raises ``HostSyncError`` naming it. ``allowed()`` lifts it for a block (a logging interval)."""

    def __init__(self):
        super().__init__()
        self.enabled = True
        # Tensors made on the host by the step itself (``torch.arange(2, 4)``, an optimizer's step
        # counter) and what is computed from them only: reading them costs no sync on CUDA
        # either. On a CPU every tensor is a host tensor, so this is how the detector tells them
        # from the batch, the parameters and what flows from them.
        self.host = set()  # ids, each dropped when its tensor is freed (a WeakSet compares tensors with ==)

    def is_host(self, tensor: torch.Tensor) -> bool:
        return id(tensor) in self.host

    def _add_host(self, tensor: torch.Tensor) -> None:
        if id(tensor) not in self.host:
            self.host.add(id(tensor))
            weakref.finalize(tensor, self.host.discard, id(tensor))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        from_host = all(self.is_host(t) for t in inputs)
        if self.enabled and not (inputs and from_host):
            problem = None
            if func in SYNCING_OPS and not (func is _aten._local_scalar_dense.default and _in_optimizer_step()):
                problem = f"{func} reads a device value on the host"
            elif func.overloadpacket is _aten.repeat_interleave and kwargs.get("output_size") is None and isinstance(args[0], torch.Tensor) and (len(args) < 2 or isinstance(args[1], torch.Tensor)):
                problem = f"{func} without output_size reads the repeats on the host"
            elif func.overloadpacket in (_aten.index, _aten.index_put, _aten.index_put_) and _is_bool_index(args[1] if len(args) > 1 else None):
                problem = f"{func} with a boolean mask needs the count of True values on the host"
            if problem:
                raise HostSyncError(f"device-to-host sync in the step: {problem} (at {_caller()})")
        out = func(*args, **kwargs)
        if from_host:  # a factory (no tensor inputs) or host tensors in: host tensors out, if on the host
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    self._add_host(t)
        return out

    def __enter__(self):
        self._patched = contextlib.ExitStack()
        for name in ("numpy", "tolist"):
            self._patched.enter_context(_refused_method(self, name))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._patched.close()

    @contextlib.contextmanager
    def allowed(self) -> Iterator[None]:
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous


@contextlib.contextmanager
def _refused_method(detector: HostSyncDetector, name: str) -> Iterator[None]:
    original = getattr(torch.Tensor, name)

    def refused(tensor, *args, **kwargs):
        if detector.enabled and not detector.is_host(tensor):
            raise HostSyncError(f"device-to-host sync in the step: Tensor.{name}() copies the values to the host")
        return original(tensor, *args, **kwargs)

    setattr(torch.Tensor, name, refused)
    try:
        yield
    finally:
        setattr(torch.Tensor, name, original)


def watch_iterations(engine, detector: HostSyncDetector) -> None:
    """Enable ``detector`` for what a training iteration runs on the device: from the batch in
    hand to the end of the iteration's handlers (metrics, post-processing, interval logging).
    Loading the batch (workers, transforms) and the epoch's end (validation, checkpoints) are
    not the step's: the detector is off there."""
    from ignite.engine import Events

    def on(_):
        detector.enabled = True

    def off(_):
        detector.enabled = False

    engine.add_event_handler(Events.GET_BATCH_COMPLETED, on)
    for event in (Events.GET_BATCH_STARTED, Events.EPOCH_COMPLETED, Events.COMPLETED):
        engine.add_event_handler(event, off)
        handlers = engine._event_handlers[event]
        handlers.insert(0, handlers.pop())  # before the others of that event
    detector.enabled = False  # until the first batch is in hand
