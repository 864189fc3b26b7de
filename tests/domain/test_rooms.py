"""Issue 13's rules (`parley_testing.room_rules`) on `ChatService` with the in-memory store and a
fake clock: the `world` of tests/domain/conftest.py."""

from __future__ import annotations

from parley_testing.room_rules import *  # noqa: F401,F403  (every rule test and the `chat` fixture, collected here with the in-memory `world`)
