"""The peers table's CPU per handshake: what the goal of 1,000 handshakes/s needs, from the open row's meter."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peers_bench():
    # Loaded by path; its `from peers import install` finds benchmarks/peers/ (a folder without an
    # __init__) through a package entry for it, so the import path stays as it is.
    added = [name for name in ("peers", "peers.install", "peers_bench_under_test") if name not in sys.modules]
    peers = types.ModuleType("peers")
    peers.__path__ = [str(REPO / "benchmarks" / "peers")]
    sys.modules.setdefault("peers", peers)
    try:
        yield _load("peers_bench_under_test", REPO / "benchmarks" / "peers_bench.py")
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _system(cpu_s: dict[str, float] | None, opened: int = 1000) -> dict:
    open_row = {"n": 1000, "opened": opened, "errors": 0, "per_s": 500.0}
    if cpu_s is not None:
        open_row["cpu_s"] = cpu_s
    return {"open": open_row}


def test_the_server_is_every_process_but_the_client(peers_bench):
    system = _system({"gateway": 1.2, "AuthorizerFunction": 0.6, "ConnectFunction": 0.4, "benchmark client": 0.8}, opened=800)
    server, client = peers_bench.handshake_cpu_ms(system)
    assert server == pytest.approx(2.75) and client == pytest.approx(1.0)


def test_the_ceiling_is_the_cores_over_both_sides_cpu(peers_bench):
    system = _system({"node": 0.6, "benchmark client": 0.4})
    assert "2 cores allow at most 2,000/s" in peers_bench._ceiling(system, 2)


def test_results_without_the_meter_or_without_a_connection_say_nothing(peers_bench):
    assert peers_bench.handshake_cpu_ms(_system(None)) is None
    assert peers_bench.handshake_cpu_ms(_system({"gateway": 1.0}, opened=0)) is None
    assert peers_bench._ceiling(_system(None), 2) == ""


def test_a_systems_output_is_counted_once_per_line_and_only_when_complete(peers_bench, tmp_path: Path):
    """The disconnect count is polled every 10 ms while a room leaves: each look reads only what is new,
    and a line the system is still writing is not matched until its newline arrives."""
    import re

    path = tmp_path / "out.log"
    log = peers_bench.OutputLog(path)
    pattern = re.compile(r'"message":"disconnected"')
    assert log.count(pattern) == 0  # nothing written yet: not even the file
    with open(path, "w") as sink:
        sink.write('{"message":"disconnected"}\n{"message":"conn')
        sink.flush()
        assert log.count(pattern) == 1
        assert log.count(pattern) == 1  # asked again: not counted twice
        sink.write('ected"}\n{"message":"disconnected"}\n{"message":"disconnec')
        sink.flush()
        assert log.count(pattern) == 2
        sink.write('ted"}\n')
        sink.flush()
        assert log.count(pattern) == 3
    assert [line.rstrip("\n") for line in log.read()][1] == '{"message":"connected"}'
    log.close()
