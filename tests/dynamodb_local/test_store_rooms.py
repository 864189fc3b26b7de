"""Issue 13's store operations against AWS's DynamoDB Local, where moto could be lenient: conditional
UpdateItems that return the old item on refusal (`ReturnValuesOnConditionCheckFailure`), `ADD` and
`DELETE` of string sets inside the `reactions` map (an emptied set disappears), `size()` of that map
in a condition, an old message without the map, the `version` each change ADDs, the COUNT Query, and the sparse `ByReader` index
with BatchGetItem of the rooms' last messages."""

from __future__ import annotations

import uuid
from typing import Any

from parley.core.ids import ulid_time_ms
from parley.core.model import ChatMessage


# A change's time (epoch ms), stamped on the message for the ByChange index.
AT = 1_800_000_000_000


def _room() -> str:
    return f"rooms-{uuid.uuid4().hex[:10]}"


def _put(store: Any, room: str, n: int, author: str = "alice") -> ChatMessage:
    message = ChatMessage(room, f"01J{n:023d}", author, author.title(), f"text {n}", "2026-11-28T21:00:00.000Z")
    store.put_message(message)
    return message


def test_edit_and_delete_are_conditional_and_explain_a_refusal_without_a_read(store):
    room = _room()
    message = _put(store, room, 1)
    edited = store.edit_message(room, message.message_id, "alice", "fixed", "2026-11-28T21:01:00.000Z", at_ms=AT)
    assert edited.changed and edited.message.text == "fixed" and edited.message.edited_at == "2026-11-28T21:01:00.000Z"
    same = store.edit_message(room, message.message_id, "alice", "fixed", "2026-11-28T21:02:00.000Z", at_ms=AT)
    assert not same.changed and same.message.edited_at == "2026-11-28T21:01:00.000Z"  # a retry: nothing written
    other = store.edit_message(room, message.message_id, "mallory", "mine", "2026-11-28T21:02:00.000Z", at_ms=AT)
    assert not other.changed and other.message.user_id == "alice" and other.message.text == "fixed"
    missing = store.edit_message(room, "01J" + "9" * 23, "alice", "x", "t", at_ms=AT)
    assert not missing.changed and missing.message is None

    refused = store.delete_message(room, message.message_id, "mallory", "t", author_id="mallory", at_ms=AT)
    assert not refused.changed and not refused.message.deleted
    deleted = store.delete_message(room, message.message_id, "mod", "2026-11-28T21:03:00.000Z", author_id=None, at_ms=AT)
    assert deleted.changed and deleted.message.deleted and deleted.message.text == "" and deleted.message.edited_at is None
    twice = store.delete_message(room, message.message_id, "mod", "t", author_id=None, at_ms=AT)
    assert not twice.changed and twice.message.deleted_by == "mod"
    assert not store.edit_message(room, message.message_id, "alice", "back", "t", at_ms=AT).changed


def test_reactions_are_sets_in_a_map_bounded_in_distinct_emoji(store):
    room = _room()
    message = _put(store, room, 1)
    first = store.react(room, message.message_id, "bob", "👍", remove=False, max_distinct=2, at_ms=AT)
    assert first.changed and first.message.reactions == {"👍": frozenset({"bob"})}
    assert not store.react(room, message.message_id, "bob", "👍", remove=False, max_distinct=2, at_ms=AT).changed  # once per user
    assert store.react(room, message.message_id, "cy", "👍", remove=False, max_distinct=2, at_ms=AT).message.reactions["👍"] == {"bob", "cy"}
    assert store.react(room, message.message_id, "bob", "🎉", remove=False, max_distinct=2, at_ms=AT).changed
    full = store.react(room, message.message_id, "bob", "😂", remove=False, max_distinct=2, at_ms=AT)
    assert not full.changed and set(full.message.reactions) == {"👍", "🎉"}  # a third distinct emoji is refused
    emptied = store.react(room, message.message_id, "bob", "🎉", remove=True, max_distinct=2, at_ms=AT)
    assert emptied.changed and set(emptied.message.reactions) == {"👍"}  # the emptied set is gone from the map
    assert store.react(room, message.message_id, "bob", "😂", remove=False, max_distinct=2, at_ms=AT).changed  # room again


def _stored_version(tables: Any, ddb: Any, room: str, message_id: str) -> str | None:
    item = ddb.get_item(TableName=tables.StoredMessage.Meta.table_name, ConsistentRead=True,
                        Key={"roomId": {"S": room}, "messageId": {"S": message_id}})["Item"]
    return item.get("version", {}).get("N")


def test_an_old_message_without_the_reactions_map_gets_one_and_without_a_version_counts_from_0(layer, store, ddb):
    """The map's own write does not move the version (nothing a reader sees changed); the reaction does."""
    tables, _ = layer
    room = _room()
    message = _put(store, room, 1)
    ddb.update_item(TableName=tables.StoredMessage.Meta.table_name,
                    Key={"roomId": {"S": room}, "messageId": {"S": message.message_id}}, UpdateExpression="REMOVE reactions, version")
    assert store.newest_messages(room, 10).messages[0].version == 0
    reacted = store.react(room, message.message_id, "bob", "👍", remove=False, max_distinct=20, at_ms=AT)
    assert reacted.changed and reacted.message.reactions == {"👍": frozenset({"bob"})} and reacted.message.version == 1
    assert _stored_version(tables, ddb, room, message.message_id) == "1"
    assert store.react(room, "01J" + "9" * 23, "bob", "👍", remove=False, max_distinct=20, at_ms=AT).message is None


def test_each_change_write_adds_one_to_the_version_and_a_refused_one_nothing(layer, store, ddb):
    """`ADD #version :one` rides on each change's own UpdateItem (no other call), and a refusal
    answers the version as it stands (ReturnValuesOnConditionCheckFailure)."""
    tables, _ = layer
    room = _room()
    message = _put(store, room, 1)
    assert _stored_version(tables, ddb, room, message.message_id) == "1"
    changes = [
        lambda: store.edit_message(room, message.message_id, "alice", "fixed", "2026-11-29T19:00:00.000Z", at_ms=AT),
        lambda: store.react(room, message.message_id, "bob", "👍", remove=False, max_distinct=20, at_ms=AT),
        lambda: store.react(room, message.message_id, "bob", "👍", remove=True, max_distinct=20, at_ms=AT),
        lambda: store.delete_message(room, message.message_id, "alice", "2026-11-29T19:01:00.000Z", author_id="alice", at_ms=AT),
    ]
    for version, change in enumerate(changes, start=2):
        made = change()
        assert made.changed and made.message.version == version
        again = change()  # a retry: refused, nothing written, the version as it stands
        assert not again.changed and again.message.version == version
        assert _stored_version(tables, ddb, room, message.message_id) == str(version)
    [tombstone] = store.newest_messages(room, 10, consistent=True).messages
    assert tombstone.deleted and tombstone.version == 5


def test_unread_count_reader_index_and_newest_message_of_each_room(store):
    room, other = _room(), _room()
    ids = [_put(store, room, n).message_id for n in range(1, 8)]
    assert store.open_reader(room, "ann") is None
    assert store.count_messages_after(room, None, 101) == 7
    assert store.count_messages_after(room, ids[2], 101) == 4
    assert store.count_messages_after(room, None, 5) == 5  # the Limit caps what is read
    assert store.advance_read_cursor(room, "ann", ids[4])
    assert store.open_reader(room, "ann") == ids[4]  # the reader UpdateItem returns the cursor
    store.open_reader(other, "ann")

    # The preview is the newest message as it stands: edited, reacted to (reactions left out).
    assert store.edit_message(room, ids[-1], "alice", "edited", "2026-11-28T21:01:00.000Z", at_ms=AT).changed
    assert store.react(room, ids[-1], "bob", "👍", remove=False, max_distinct=20, at_ms=AT).changed
    assert store.edit_message(room, ids[0], "alice", "old edit", "2026-11-28T21:02:00.000Z", at_ms=AT).changed  # not the newest
    rooms = {r.room_id: r for r in store.reader_rooms("ann", 500)}
    assert set(rooms) == {room, other}
    assert (rooms[room].read_cursor, rooms[room].last_message_id) == (ids[4], ids[-1])
    assert rooms[room].last_message == {"roomId": room, "messageId": ids[-1], "userId": "alice", "name": "Alice",
                                        "message": "edited", "timestamp": "2026-11-28T21:00:00.000Z",
                                        "editedAt": "2026-11-28T21:01:00.000Z", "version": 3}
    assert (rooms[other].read_cursor, rooms[other].last_message_id, rooms[other].last_message) == (None, None, None)

    # Deleting the newest message leaves its tombstone as the preview, the room's place unchanged.
    assert store.delete_message(room, ids[-1], "alice", "2026-11-28T21:03:00.000Z", author_id="alice", at_ms=AT).changed
    shown = {r.room_id: r for r in store.reader_rooms("ann", 500)}[room]
    assert shown.last_message_id == ids[-1] and shown.last_message["deletedBy"] == "alice" and "message" not in shown.last_message


def test_reader_rooms_reads_many_rooms_side_by_side_each_with_its_own_newest(store):
    rooms = [_room() for _ in range(40)]
    for n, room in enumerate(rooms):
        _put(store, room, n + 1)
        _put(store, room, n + 100)
        store.open_reader(room, "zed")
    listed = {r.room_id: r for r in store.reader_rooms("zed", 500)}
    assert {room: (r.last_message_id, r.last_message["message"]) for room, r in listed.items()} == {
        room: (f"01J{n + 100:023d}", f"text {n + 100}") for n, room in enumerate(rooms)
    }
    assert len(store.reader_rooms("zed", 7)) == 7
    assert store.reader_rooms("nobody", 500) == []


def test_each_change_stamps_its_time_and_the_change_index_answers_a_rejoin(store):
    """The sparse ByChange index on DynamoDB Local: only changed messages are in it, each under its
    last change's time (SET in the change's own UpdateItem, beside DELETE/ADD for a reaction); the
    Query reads newest change first and leaves out (FilterExpression) the messages after `since`."""
    room = _room()
    old = [_put(store, room, n) for n in range(1, 5)]
    new = _put(store, room, 60)
    since = f"01J{50:023d}"  # after the four, before `new`
    at = ulid_time_ms(since)
    assert store.edit_message(room, old[0].message_id, "alice", "heard live", "t", at_ms=at - 5000).changed
    assert store.edit_message(room, old[1].message_id, "alice", "fixed", "t", at_ms=at + 1).changed
    assert store.delete_message(room, old[2].message_id, "mod", "t", author_id=None, at_ms=at + 2).changed
    assert store.react(room, new.message_id, "bob", "🎉", remove=False, max_distinct=20, at_ms=at + 3).changed
    assert store.react(room, old[3].message_id, "bob", "👍", remove=False, max_distinct=20, at_ms=at + 4).changed
    assert store.react(room, old[3].message_id, "bob", "👍", remove=True, max_distinct=20, at_ms=at + 6).changed
    assert not store.react(room, old[3].message_id, "bob", "👍", remove=True, max_distinct=20, at_ms=at + 9).changed

    page = store.messages_changed_since(room, since, 10, max_read=40)
    assert [m.message_id for m in page.messages] == [old[3].message_id, old[2].message_id, old[1].message_id]
    unreacted, tombstone, edited = page.messages
    assert (unreacted.reactions, unreacted.version) == ({}, 3), "the refused removal moved neither version nor time"
    assert tombstone.deleted and tombstone.version == 2 and (edited.text, edited.version) == ("fixed", 2)
    assert not page.has_more
    # The change to `new` (after `since`) is read and passed over: it takes no place of the `limit`.
    capped = store.messages_changed_since(room, since, 2, max_read=40)
    assert [m.message_id for m in capped.messages] == [old[3].message_id, old[2].message_id] and capped.has_more
    assert store.messages_changed_since(room, since, 3, max_read=40).has_more is False


def test_the_change_index_is_read_in_filtered_pages_up_to_a_budget(store):
    """DynamoDB applies a Query's Limit before its FilterExpression: a page of changes to newer
    messages comes back empty with a LastEvaluatedKey, and the store reads on from it, `limit` + 1
    entries a page, until it keeps `limit` + 1 older ones or has read `max_read` entries."""
    room = _room()
    old = [_put(store, room, n) for n in range(1, 4)]
    since = f"01J{50:023d}"
    at = ulid_time_ms(since)
    for n, message in enumerate(old):
        assert store.react(room, message.message_id, "bob", "👍", remove=False, max_distinct=20, at_ms=at + n).changed
    for n in range(7):  # newer changes, all to messages after `since`, made after the older ones
        newer = _put(store, room, 60 + n)
        assert store.react(room, newer.message_id, "bob", "👍", remove=False, max_distinct=20, at_ms=at + 10 + n).changed
    ids = [m.message_id for m in old][::-1]
    # Pages of 3: two of newer changes only (empty after the filter), then the older ones.
    found = store.messages_changed_since(room, since, 2, max_read=12)
    assert [m.message_id for m in found.messages] == ids[:2] and found.has_more
    whole = store.messages_changed_since(room, since, 3, max_read=12)
    assert [m.message_id for m in whole.messages] == ids and not whole.has_more
    # A budget spent with entries left unread: there may be more.
    spent = store.messages_changed_since(room, since, 3, max_read=8)
    assert [m.message_id for m in spent.messages] == ids[:1] and spent.has_more
    assert store.messages_changed_since(room, since, 3, max_read=6).messages == []
