"""Unread counts and the `get_rooms` list: the capping rule and the paging order. No I/O.

Counting unread messages is a Query that reads every message it counts, so the count stops at
UNREAD_CAP (+1 to know there were more): a room with 10,000 unread messages costs the same as
one with 101, and the client shows "100+".

`get_rooms` orders the user's rooms by their newest message (a ULID, so time order is string
order), read from history when the list is asked for (nothing is written per message for it),
ties by room id, and pages with an opaque cursor holding the last key it returned:
a room whose activity moves while the user pages appears at most once per page and is never
skipped over because of another room's move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .model import ChatMessage

UNREAD_CAP = 100
DEFAULT_ROOMS_PAGE = 20
MAX_ROOMS_PAGE = 50
# get_rooms sorts all of a user's rooms before paging; past this many, the least recently joined
# (by room id order in the index) are not listed. Bounds the index Query and the newest-message
# Queries (one per room).
MAX_LISTED_ROOMS = 500
PREVIEW_CHARS = 200  # lastMessage carries the start of the text, so a room list stays small
_CURSOR_SEPARATOR = "/"  # cannot occur in a room id or a ULID


def unread_fields(counted: int) -> dict[str, Any]:
    """`counted` is what a Query with Limit UNREAD_CAP + 1 returned."""
    return {"unreadCount": min(counted, UNREAD_CAP), "unreadCapped": counted > UNREAD_CAP}


def unread_from_page(ids: Sequence[str], cursor: str | None, *, complete_from: str | None) -> int | None:
    """Unread messages counted from a history page the join already read, None when it cannot tell.

    `ids` are the page's message ids in order; the page holds every message whose id is at least
    `complete_from` ("" when it holds the whole room, None when it is not known to reach the newest
    message). A user who read up to somewhere inside the page costs no extra Query.
    """
    if complete_from is None:
        return None
    if cursor is None:
        return len(ids) if complete_from == "" else None
    if cursor >= complete_from:
        return sum(1 for message_id in ids if message_id > cursor)
    return None


@dataclass(frozen=True)
class RoomActivity:
    """One room the user joined or read, as `get_rooms` needs it."""

    room_id: str
    last_message_id: str | None  # None: no message yet
    read_cursor: str | None  # the newest message the user marked read; None: none
    last_message: Mapping[str, Any] | None = field(default=None, compare=False)  # the preview rooms_list sends

    @classmethod
    def of(cls, room_id: str, read_cursor: str | None, newest: ChatMessage | None) -> RoomActivity:
        """The room as its newest message (edited or deleted as it now stands) shows it."""
        if newest is None:
            return cls(room_id, None, read_cursor)
        return cls(room_id, newest.message_id, read_cursor, preview(newest.to_wire()))

    @property
    def key(self) -> tuple[str, str]:
        return (self.last_message_id or "", self.room_id)


def preview(message_wire: Mapping[str, Any]) -> dict[str, Any]:
    """A message as `rooms_list` shows it: the wire form with the text cut to PREVIEW_CHARS, no reactions."""
    shown = {key: value for key, value in message_wire.items() if key not in ("reactions", "clientMessageId")}
    if isinstance(shown.get("message"), str) and len(shown["message"]) > PREVIEW_CHARS:
        shown["message"] = shown["message"][:PREVIEW_CHARS]
        shown["truncated"] = True
    return shown


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
