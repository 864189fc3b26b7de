"""The chat rules run in memory: `ChatService` per request over the in-memory store, a fake
clock and a recording sender (`parley_testing.chat_world.MemoryChatWorld`)."""

from __future__ import annotations

import pytest

from parley_testing.chat_world import MemoryChatWorld


@pytest.fixture
def world() -> MemoryChatWorld:
    return MemoryChatWorld()
