"""Identifiers and timestamps the protocol promises: ULIDs and ISO-8601 UTC with milliseconds.

ULIDs sort by time as strings, so a DynamoDB range key of ULIDs gives history in order
without a separate timestamp index.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime, timezone

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
# What a room id may be, wherever one arrives (a client frame, a fan-out event).
ROOM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_ULID_RE = re.compile(ULID_PATTERN)
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid_at(ms: int) -> str:
    """A ULID for a given millisecond, outside the monotonic sequence (for tests and imports)."""
    return _encode(ms, 10) + _encode(int.from_bytes(os.urandom(10), "big"), 16)


def new_ulid(now_ms: int | None = None) -> str:
    """A ULID that is strictly greater than every earlier one from this process.

    Within one millisecond the random part is incremented instead of redrawn, so two
    messages stored in the same millisecond by one handler still sort in send order.
    """
    global _last_ms, _last_random
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_random = (_last_random + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        return _encode(ms, 10) + _encode(_last_random, 16)


def is_ulid(value: object) -> bool:
    return isinstance(value, str) and bool(_ULID_RE.match(value))


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp a ULID was minted at (its first 10 characters)."""
    result = 0
    for char in value[:10]:
        result = result * 32 + _CROCKFORD.index(char)
    return result


def iso_now(now: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, the only timestamp format the protocol uses."""
    moment = now or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_at(ms: int) -> str:
    """`iso_now` for an epoch-millisecond instant, so timestamps follow the service's clock."""
    return iso_now(datetime.fromtimestamp(ms / 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000))
