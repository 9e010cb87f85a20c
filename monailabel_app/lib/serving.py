"""How the server runs inference requests: off the event loop, a bounded number at a time, and
only on studies of the datastore or files the client sent.

MONAI Label's ``POST /infer/{model}`` is an ``async`` endpoint that runs the whole inference
on the server's event loop: while one cine is segmented, ``/info``, ``/datastore`` and label
uploads wait (4.4 s for ``/info`` during a 96-frame cine). ``infer_off_the_event_loop`` makes
the endpoint return at once a response that runs MONAI Label's own request handling in a worker
thread when it is sent (FastAPI's routes are not replaced: their internals change between
FastAPI versions, the response protocol does not); the model computations take one of
``INFER_SLOTS`` slots (``MONAI_LABEL_INFER_CONCURRENCY`` when it
is set above 0, else 1): more at once only divide the same cores and multiply the memory.

MONAI Label reads ``image=`` as a file path whenever such a file exists on the server (any
readable file: ``/etc/passwd`` answered a bare 500). Here a request's ``image`` is a study id of
the datastore (else 404); a path is taken only from the endpoint itself (an uploaded file, a
session's image), which ``client_input`` marks.

A request that fails still removes its temp files (the uploaded image, the DICOM SEG it would
answer): FastAPI drops the background tasks that would have (``lib/temporaries.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from typing import Any, Callable, Iterator, Optional

from fastapi import HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, Response
from monailabel.config import settings
from monailabel.endpoints import infer as infer_endpoint
from monailabel.interfaces.datastore import Datastore
from monailabel.utils.others.generic import remove_file
from starlette.concurrency import run_in_threadpool

from .datastore import study_problem
from .temporaries import remove_temporaries

logger = logging.getLogger(__name__)

INFER_SLOTS = settings.MONAI_LABEL_INFER_CONCURRENCY if settings.MONAI_LABEL_INFER_CONCURRENCY > 0 else 1
_slots = threading.BoundedSemaphore(INFER_SLOTS)
_request = threading.local()


@contextlib.contextmanager
def client_input(given: bool) -> Iterator[None]:
    """Within: the request's image is a file the endpoint made (an upload, a session's image)."""
    previous = getattr(_request, "client_input", False)
    _request.client_input = given
    try:
        yield
    finally:
        _request.client_input = previous


def image_to_infer(datastore: Datastore, image: str) -> Optional[str]:
    """The file an infer request reads: the study ``image`` names (an HTTP 404 for anything else,
    paths included), or ``image`` itself where the endpoint made it; an HTTP 422 naming the file
    when it cannot be read. Returns the study's file when the request must name it instead of
    the id (an id that is also the name of a file in the server's working folder)."""
    if getattr(_request, "client_input", False):
        problem = study_problem(image)
        if problem:
            raise HTTPException(status_code=422, detail=f"the uploaded image cannot be read: {problem}")
        return None
    uri = datastore.get_image_uri(image)  # 404 for what is not a study id
    problem = study_problem(uri)
    if problem:
        raise HTTPException(status_code=422, detail=f"study {image!r} ({os.path.basename(uri.rstrip(os.sep))}) cannot be read: {problem}")
    return uri if os.path.exists(image) else None


class InferredInAWorkerThread(Response):
    """What the infer endpoint returns at once: the inference runs when the response is sent, in
    a worker thread, and its response (a file, JSON, multipart) is sent in its place. Errors
    raised there (HTTPException) are answered as usual: nothing has been sent yet. The request's
    temp files (its ``background_tasks``) are removed when it fails as when it succeeds; a file
    answered that MONAI Label wrote to the temp folder for this response only
    (``answers_a_temp_file``: the DICOM SEG of ``output=dicom_seg``) is removed once sent."""

    def __init__(self, run: Callable[[], Any], client_given: bool, background_tasks: Any = None, answers_a_temp_file: bool = False):
        super().__init__()
        self.run, self.client_given = run, client_given
        self.background_tasks, self.answers_a_temp_file = background_tasks, answers_a_temp_file

    def _run_in_a_slot(self):
        try:
            with _slots, client_input(self.client_given):
                result = self.run()
        except BaseException:
            remove_temporaries(self.background_tasks)
            raise
        if self.answers_a_temp_file and isinstance(result, FileResponse) and self.background_tasks is not None:
            self.background_tasks.add_task(remove_file, result.path)
        return result

    async def __call__(self, scope, receive, send):
        result = await run_in_threadpool(self._run_in_a_slot)
        response = result if isinstance(result, Response) else JSONResponse(jsonable_encoder(result))
        if response.background is None:
            response.background = self.background  # the endpoint's tasks (removing temporary files)
        try:
            await response(scope, receive, send)
        except BaseException:  # not all sent (the client went away): the tasks did not run
            remove_temporaries(response.background)
            remove_temporaries(self.background_tasks)
            raise


_run_inference = infer_endpoint.run_inference


def run_inference_later(background_tasks, model, image="", session_id="", params="{}", file=None, label=None, output=None):
    """In place of MONAI Label's ``run_inference``, which its ``async`` endpoint calls."""
    if output in ("image", "dicom_seg"):
        # a detector answers with boxes (JSON) and writes no label file: MONAI Label would answer
        # a request for the file with a bare 500
        kind = ((infer_endpoint.app_instance().info().get("models") or {}).get(model) or {}).get("type")
        if kind in ("detection", "classification"):
            raise HTTPException(status_code=400, detail=f"{model} is a {kind} model: it answers with JSON, not a label file; ask with output=json (or no output)")
    sessions = infer_endpoint.app_instance().sessions() if session_id else None
    session = sessions.get_session(session_id) if sessions else None  # an unknown session: image= is a study id
    run = functools.partial(_run_inference, background_tasks, model, image, session_id, params, file, label, output)
    return InferredInAWorkerThread(run, client_given=bool(file) or session is not None, background_tasks=background_tasks, answers_a_temp_file=output == "dicom_seg")


def infer_off_the_event_loop() -> bool:
    """Make MONAI Label's ``POST /infer/{model}`` run inference in a worker thread; False (and a
    warning) when its endpoint does not call ``run_inference`` as MONAI Label 0.8 does."""
    if "run_inference" not in infer_endpoint.api_run_inference.__code__.co_names:
        logger.warning("MONAI Label's infer endpoint does not call run_inference: inference runs on the event loop (other requests wait for it)")
        return False
    infer_endpoint.run_inference = run_inference_later
    logger.info(f"POST /infer/<model> runs in worker threads, {INFER_SLOTS} inference(s) at a time")
    return True
