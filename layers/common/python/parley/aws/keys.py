"""Key formats of the tables in template.yaml, in one place so the store and the tools agree.

Memberships and read cursors share the room's partition; idempotency records and rate counters
share `IdempotencyTable`. Their prefixes keep each kind of item apart within its table.
"""

from __future__ import annotations

MEMBER_PREFIX = "c#"
READ_CURSOR_PREFIX = "r#"
ROOM_ACTIVITY_KEY = "room"  # the room's last message; outside both prefixes, so no member or cursor Query reads it


def member_key(connection_id: str) -> str:
    return MEMBER_PREFIX + connection_id


def read_cursor_key(user_id: str) -> str:
    return READ_CURSOR_PREFIX + user_id


def idempotency_key(user_id: str, room_id: str, client_message_id: str) -> str:
    return f"{user_id}#{room_id}#{client_message_id}"


def rate_counter_key(kind: str, user_id: str, window: int) -> str:
    return f"rate#{kind}#{user_id}#{window}"
