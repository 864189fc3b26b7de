"""What every test needs, whatever its folder."""

from __future__ import annotations

import pytest

from parley.core import ids


@pytest.fixture(autouse=True)
def fresh_id_sequence(monkeypatch):
    """Each test starts the ULID sequence afresh. Ids are monotonic per process, so a test whose fake
    clock ran ahead left every later test minting ids from its future: a `since` or a change time
    taken from the real clock then fell before them (a rejoin's cost test failed after the domain
    tests, 2 runs in 3)."""
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_last_random", 0)
