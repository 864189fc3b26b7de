"""Key formats of the tables in template.yaml, in one place so the store and the tools agree.

Memberships (`c#`), read cursors (`r#`), participants (`u#`), the room's size (`n#`) and presence
changes (`p#`) share the room's partition; idempotency records and rate counters
share `IdempotencyTable`. Their prefixes keep each kind of item apart within its table.
Tables deployed before `get_rooms` read history may still hold a `memberKey = "room"` item per
room (the old last-message copy): outside every prefix, nothing reads or writes it any more.
"""

from __future__ import annotations

MEMBER_PREFIX = "c#"
READ_CURSOR_PREFIX = "r#"
PARTICIPANT_PREFIX = "u#"
PRESENCE_PREFIX = "p#"
ROOM_SIZE_KEY = "n#"


def member_key(connection_id: str) -> str:
    return MEMBER_PREFIX + connection_id


def read_cursor_key(user_id: str) -> str:
    return READ_CURSOR_PREFIX + user_id


def participant_key(user_id: str) -> str:
    return PARTICIPANT_PREFIX + user_id


def presence_key(change_id: str) -> str:
    return PRESENCE_PREFIX + change_id


def idempotency_key(user_id: str, room_id: str, client_message_id: str) -> str:
    return f"{user_id}#{room_id}#{client_message_id}"


def rate_counter_key(kind: str, user_id: str, window: int) -> str:
    return f"rate#{kind}#{user_id}#{window}"


def fanout_claim_key(delivery_id: str, shard: int) -> str:
    return f"fanout#{delivery_id}#{shard}"


def fanout_plan_key(delivery_id: str, after: str) -> str:
    """How a continuation cut the page of the room after connection `after` (`PagePlan`)."""
    return f"fanplan#{delivery_id}#{after}"
