"""The server's temporary files go when their request (or the start) is done.

MONAI Label 0.8 saves every upload (an image or label for the datastore, a file to infer, a
session's files, a model) to a file in the system temp folder and removes it in a background
task of the request. FastAPI drops a request's background tasks when its handler raises, so
each refused upload (a 422 for an unreadable image or a label that does not fit, a 404, any
error) stayed in the temp folder for good. ``GET /datastore/dataset`` answers a ZIP archive of
the datastore written to the temp folder and never removed; ``output=dicom_seg`` does the same
with the DICOM SEG it answers. ``monailabel start_server`` writes its logging config to a
temporary JSON file at every start (without ``--log_config``) and leaves it there.

``clean_up_after_requests`` wraps those endpoint functions (MONAI Label's routes call them by
their module-level names; the routes themselves are not replaced) so that the request's queued
removals run when it fails, and the archive is removed once it was sent.
``remove_start_log_config`` removes the start's logging config once uvicorn has read it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Any, Callable, Optional

from monailabel.utils.others.generic import remove_file
from starlette.background import BackgroundTask, BackgroundTasks
from starlette.responses import FileResponse

logger = logging.getLogger(__name__)


def remove_temporaries(background: Any) -> None:
    """Run now the temp file removals (``remove_file``) queued in a request's background tasks:
    FastAPI drops them when the request fails. Removing twice is harmless."""
    tasks = getattr(background, "tasks", None) or ([background] if isinstance(background, BackgroundTask) else [])
    for task in list(tasks):
        if getattr(task, "func", None) is remove_file:
            with contextlib.suppress(OSError):
                remove_file(*task.args, **task.kwargs)


def removing_temporaries_on_error(fn: Callable) -> Callable:
    """``fn(background_tasks, ...)`` (an endpoint function of MONAI Label) whose temp files are
    removed when it raises."""

    @functools.wraps(fn)
    def wrapper(background_tasks: BackgroundTasks, *args, **kwargs):
        try:
            return fn(background_tasks, *args, **kwargs)
        except BaseException:
            remove_temporaries(background_tasks)
            raise

    wrapper.removes_temporaries = True
    return wrapper


def removing_the_archive(fn: Callable) -> Callable:
    """``download_dataset``, whose ZIP archive (a new file in the temp folder at each request)
    is removed once the response was sent."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        response = fn(*args, **kwargs)
        if isinstance(response, FileResponse) and in_temp_folder(response.path):
            remove_once_sent(response, response.path)
        return response

    wrapper.removes_temporaries = True
    return wrapper


def in_temp_folder(path: str) -> bool:
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(tempfile.gettempdir())


def remove_once_sent(response: Any, path: str) -> None:
    """Add the removal of ``path`` to what runs after ``response`` was sent."""
    if response.background is None:
        response.background = BackgroundTasks()
    elif isinstance(response.background, BackgroundTask) and not isinstance(response.background, BackgroundTasks):
        response.background = BackgroundTasks([response.background])
    response.background.add_task(remove_file, path)


# endpoint module -> the functions its routes call with the request's background tasks first
_UPLOADS = {"datastore": ("add_image", "save_label"), "session": ("create_session",), "model": ("update_model",)}


def clean_up_after_requests() -> list:
    """Wrap MONAI Label's endpoint functions that leave temp files behind (see the module's
    docstring); returns the names wrapped. A function whose route no longer calls it by that
    name (another MONAI Label version) is left as it is, with a warning. ``POST /infer`` is
    handled in ``lib/serving.py``."""
    import importlib

    wrapped = []
    plan = [(module, name, removing_temporaries_on_error) for module, names in _UPLOADS.items() for name in names]
    plan.append(("datastore", "download_dataset", removing_the_archive))
    for module_name, name, wrap in plan:
        module = importlib.import_module(f"monailabel.endpoints.{module_name}")
        fn = getattr(module, name, None)
        if fn is None or not _called_by_a_route(module, name):
            logger.warning(f"monailabel.endpoints.{module_name}.{name} is not called by its route as in MONAI Label 0.8: its temporary files are not cleaned up here")
            continue
        if not getattr(fn, "removes_temporaries", False):
            setattr(module, name, wrap(fn))
        wrapped.append(f"{module_name}.{name}")
    return wrapped


def _called_by_a_route(module: Any, name: str) -> bool:
    return any(
        callable(obj) and name in getattr(getattr(obj, "__code__", None), "co_names", ()) and obj_name.startswith("api_")
        for obj_name, obj in vars(module).items()
    )


def remove_start_log_config() -> Optional[str]:
    """Remove the logging config ``monailabel start_server`` wrote to the temp folder for this
    start (it names none given with ``--log_config``); uvicorn read it before the app started.
    Left alone where uvicorn starts worker processes (``--workers`` above 1: each reads it) or
    the start is not found on the call stack. Returns the path removed, or None."""
    spec = importlib.util.find_spec("monailabel.main")  # run as __main__ (python -m) or imported (the script)
    main_py = os.path.realpath(spec.origin) if spec and spec.origin else None
    frame = sys._getframe()
    while frame is not None and not (frame.f_code.co_name == "action_start_server" and os.path.realpath(frame.f_code.co_filename) == main_py):
        frame = frame.f_back
    if frame is None:
        return None
    written, args = frame.f_locals.get("log_config"), frame.f_locals.get("args")
    given = getattr(args, "log_config", None)
    if not isinstance(written, str) or written == given or (getattr(args, "workers", None) or 1) > 1 or not in_temp_folder(written):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.remove(written)
        logger.info(f"removed the start's logging config {written} (read at start)")
        return written
    return None
