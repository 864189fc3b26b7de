"""Running the Lambda functions as Lambda does: the import path it gives them (in this process and
in child processes), loading `functions/<name>/app.py`, and the context object it passes."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from .template import LAYER, ROOT


def lambda_import_env(folder: str | None) -> dict[str, str]:
    """PYTHONPATH for a child process started as function `folder` would be: its own code first
    (the task root, Lambda's /var/task), then the layer (/opt/python). For a process that is no
    function, empty: that adds nothing, and keeps the caller's own PYTHONPATH from leaking in."""
    entries = [ROOT / "functions" / folder, LAYER] if folder else []
    return {"PYTHONPATH": os.pathsep.join(str(entry) for entry in entries)}


def import_the_layer() -> None:
    """Make `import parley` work in this process, as /opt/python makes it work on Lambda.

    The layer is deployed as a folder, not an installed package, so the only way to import it
    is a path entry: this is the one place outside `parley_local`'s workers that edits sys.path
    (pytest gets the same entry from `pythonpath` in pyproject.toml).
    """
    if str(LAYER) not in sys.path:
        sys.path.insert(0, str(LAYER))


def load_function(folder: str) -> Any:
    """Import functions/<folder>/app.py under a unique module name, as Lambda would load it."""
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{folder}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    """The context argument of a handler invoked in-process: what Powertools and the handlers read
    (name, memory, ARN, request id, and the 29 s integration timeout as the time left)."""

    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"

    def __init__(self, function_name: str = "test", aws_request_id: str = "req-test") -> None:
        self.function_name = function_name
        self.aws_request_id = aws_request_id

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000

