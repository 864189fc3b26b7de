"""Unread capping and the `get_rooms` paging order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.room_list import (
    UNREAD_CAP,
    RoomActivity,
    decode_cursor,
    newest_first_page,
    unread_fields,
    unread_from_page,
)


@pytest.mark.parametrize(
    "counted, fields",
    [(0, (0, False)), (1, (1, False)), (UNREAD_CAP, (UNREAD_CAP, False)), (UNREAD_CAP + 1, (UNREAD_CAP, True))],
)
def test_unread_is_exact_up_to_the_cap_then_capped(counted, fields):
    assert unread_fields(counted) == {"unreadCount": fields[0], "unreadCapped": fields[1]}


activities = st.lists(
    st.builds(
        RoomActivity,
        room_id=st.text("abc", min_size=1, max_size=3),
        last_message_id=st.one_of(st.none(), st.sampled_from(["01A", "01B", "01C"])),
        read_cursor=st.none(),
    ),
    unique_by=lambda room: room.room_id,
    max_size=12,
)


@given(rooms=activities, limit=st.integers(1, 5))
def test_paging_returns_every_room_once_newest_first(rooms, limit):
    seen, cursor = [], None
    for _ in range(len(rooms) + 1):
        page, cursor = newest_first_page(rooms, limit, cursor)
        assert len(page) <= limit
        seen += page
        if cursor is None:
            break
    assert sorted(r.room_id for r in seen) == sorted(r.room_id for r in rooms)
    assert [r.key for r in seen] == sorted((r.key for r in rooms), reverse=True)


def test_rooms_without_messages_come_last():
    rooms = [RoomActivity("quiet", None, None), RoomActivity("busy", "01B", None), RoomActivity("old", "01A", None)]
    page, cursor = newest_first_page(rooms, 10)
    assert [r.room_id for r in page] == ["busy", "old", "quiet"] and cursor is None


@pytest.mark.parametrize("cursor", ["", "no-separator", "01A/"])
def test_a_cursor_not_written_by_the_server_is_refused(cursor):
    with pytest.raises(ValueError):
        decode_cursor(cursor)


ROOM = [f"01A{n:02d}" for n in range(10)]  # ten message ids in order


@given(cursor=st.one_of(st.none(), st.sampled_from(ROOM + ["0", "01A035"])), size=st.integers(0, 10), newest=st.booleans())
def test_unread_from_a_page_is_exact_or_unknown(cursor, size, newest):
    """A page is either the newest `size` messages or everything after some message; never a wrong count."""
    truth = sum(1 for m in ROOM if cursor is None or m > cursor)
    if newest:
        ids = ROOM[len(ROOM) - size :]
        complete_from = "" if size == len(ROOM) else (ids[0] if ids else None)
    else:
        since = ROOM[len(ROOM) - size - 1] if size < len(ROOM) else "0"
        ids = [m for m in ROOM if m > since]
        complete_from = since
    counted = unread_from_page(ids, cursor, complete_from=complete_from)
    assert counted is None or counted == truth
    if cursor is not None and ids and cursor >= ids[0]:
        assert counted == truth  # read up to inside the page: no Query needed
