"""Calling the Lambda functions in-process: load `functions/<name>/app.py` as Lambda does, and read
back what moto's `@connections` backend recorded."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

from .template import ROOT


def load_function(folder: str) -> Any:
    """Import functions/<folder>/app.py under a unique module name, as Lambda would load it."""
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{folder}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_frames(data: bytes) -> list[dict[str, Any]]:
    """moto appends every PostToConnection payload to one buffer; split it back into frames."""
    decoder = json.JSONDecoder()
    text = data.decode("utf-8")
    frames, index = [], 0
    while index < len(text):
        frame, index = decoder.raw_decode(text, index)
        frames.append(frame)
    return frames
