"""What every test needs, whatever its folder."""

from __future__ import annotations

import pytest

from parley.core import ids
from parley_testing.gateway_thread import RunningGateway


@pytest.fixture(autouse=True)
def fresh_id_sequence(monkeypatch):
    """Each test starts the ULID sequence afresh. Ids are monotonic per process, so a test whose fake
    clock ran ahead left every later test minting ids from its future: a `since` or a change time
    taken from the real clock then fell before them (a rejoin's cost test failed after the domain
    tests, 2 runs in 3)."""
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_last_random", 0)


@pytest.fixture(autouse=True)
def gateway_loops_still_running():
    """The test during which a gateway's loop died fails, naming the exception. Gateways run in threads of
    this process for a module or the session; a dead one otherwise showed only as later tests' handshake
    timeouts (a patched `time.monotonic` that ran out, in a CI run)."""
    yield
    dead = RunningGateway.deaths()
    if dead:
        pytest.fail("a gateway's event loop died during this test: " + "; ".join(dead), pytrace=False)
