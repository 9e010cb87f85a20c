"""One error type for bad angiography input: it always names the file and the problem."""

from __future__ import annotations

import os


class AngioDataError(ValueError):
    """Raised for unreadable, corrupt or unexpected input; ``str()`` is "<path>: <problem>"."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else "<array>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
