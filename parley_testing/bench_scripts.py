"""The benchmark scripts, loaded by path, for the tests of their pure parts.

Why by path: the scripts sit in benchmarks/, which is not a package, and import one another by plain
name (`import peers_bench`, `from peers import install`). Registering each under that name while a
test module uses it keeps the import path as it is (tests/test_layout.py) and leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


@contextmanager
def benchmark_scripts(*names: str) -> Iterator[list[types.ModuleType]]:
    """The scripts `names` (in order: a later one may import an earlier one), with benchmarks/peers/ as
    the `peers` package the peers benchmark imports its installer from."""
    before = set(sys.modules)
    peers = types.ModuleType("peers")
    peers.__path__ = [str(BENCHMARKS / "peers")]
    sys.modules.setdefault("peers", peers)
    try:
        yield [_load(name) for name in names]
    finally:
        for name in set(sys.modules) - before:
            sys.modules.pop(name, None)
