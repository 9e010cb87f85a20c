"""One error type for bad angiography input: it always names the file and the problem."""

from __future__ import annotations

import os


class AngioDataError(ValueError):
    """Raised for unreadable, corrupt or unexpected input; ``str()`` is "<path>: <problem>"."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else "<array>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # rebuilt from both arguments: an error raised in a worker process reaches the parent whole
        return (type(self), (self.path, self.problem))


def read_json(path, what: str):
    """The parsed JSON of ``path`` (``what`` it should be, for the error): a missing, unreadable
    or invalid file is an ``AngioDataError`` naming it."""
    import json

    if not os.path.isfile(path):
        raise AngioDataError(path, f"{what} not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AngioDataError(path, f"not a JSON {what} ({type(e).__name__}: {e})") from e
