"""Unread counts and the `get_rooms` list: the capping rule and the paging order. No I/O.

Counting unread messages is a Query that reads every message it counts, so the count stops at
UNREAD_CAP (+1 to know there were more): a room with 10,000 unread messages costs the same as
one with 101, and the client shows "100+".

`get_rooms` orders the user's rooms by their newest message (a ULID, so time order is string
order), ties by room id, and pages with an opaque cursor holding the last key it returned:
a room whose activity moves while the user pages appears at most once per page and is never
skipped over because of another room's move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

UNREAD_CAP = 100
DEFAULT_ROOMS_PAGE = 20
MAX_ROOMS_PAGE = 50
_CURSOR_SEPARATOR = "/"  # cannot occur in a room id or a ULID


def unread_fields(counted: int) -> dict[str, Any]:
    """`counted` is what a Query with Limit UNREAD_CAP + 1 returned."""
    return {"unreadCount": min(counted, UNREAD_CAP), "unreadCapped": counted > UNREAD_CAP}


@dataclass(frozen=True)
class RoomActivity:
    """One room the user joined or read, as `get_rooms` needs it."""

    room_id: str
    last_message_id: str | None  # None: no message yet
    read_cursor: str | None  # the newest message the user marked read; None: none

    @property
    def key(self) -> tuple[str, str]:
        return (self.last_message_id or "", self.room_id)


def encode_cursor(room: RoomActivity) -> str:
    return f"{room.last_message_id or ''}{_CURSOR_SEPARATOR}{room.room_id}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The key a `nextCursor` holds; ValueError when it is not one `encode_cursor` wrote."""
    last, separator, room_id = cursor.partition(_CURSOR_SEPARATOR)
    if not separator or not room_id:
        raise ValueError("not a rooms cursor")
    return last, room_id


def newest_first_page(
    rooms: Sequence[RoomActivity], limit: int, cursor: str | None = None
) -> tuple[list[RoomActivity], str | None]:
    """One page, newest activity first, after `cursor`; the cursor of the next page or None."""
    ordered = sorted(rooms, key=lambda room: room.key, reverse=True)
    if cursor is not None:
        after = decode_cursor(cursor)
        ordered = [room for room in ordered if room.key < after]
    page = ordered[:limit]
    return page, encode_cursor(page[-1]) if len(ordered) > limit else None
