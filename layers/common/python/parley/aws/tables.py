"""PynamoDB models: one class per kind of item, reading like the table design in docs/ARCHITECTURE.md.

Key formats (prefixes, composite keys) are in `keys`."""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute, UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from .config import settings
from .dynamodb_requests import send_item_calls_directly
from .dynamodb_responses import read_items_directly


class _Meta:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # Explicit timeouts: a hung socket must not eat the 29 s integration budget.
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 3


class _Table(Model):
    """Every model here: the botocore client of its connection reads item answers without botocore's
    walk of every value (`dynamodb_responses`) and sends item calls without its per-call pipeline
    (`dynamodb_requests`, unless something else hooks into them), whichever call builds that client first."""

    @classmethod
    def _get_connection(cls) -> Any:
        table = super()._get_connection()
        send_item_calls_directly(read_items_directly(table.connection.client))
        return table


class _RoomItem(_Table):
    """An item in a room's partition of `MembershipsTable`; `memberKey`'s prefix says which kind (`keys`)."""

    class Meta(_Meta):
        table_name = settings.memberships_table

    room_id = UnicodeAttribute(hash_key=True, attr_name="roomId")
    member_key = UnicodeAttribute(range_key=True, attr_name="memberKey")


class ByConnectionIndex(GlobalSecondaryIndex["Membership"]):
    """The rooms of one connection, so disconnect clean-up is a Query, never a Scan."""

    class Meta:
        index_name = "ByConnection"
        projection = KeysOnlyProjection()

    connection_id = UnicodeAttribute(hash_key=True, attr_name="connectionId")
    room_id = UnicodeAttribute(range_key=True, attr_name="roomId")


class Membership(_RoomItem):
    """A connection in a room: `memberKey = c#<connectionId>`. The room's partition is its fan-out list."""

    connection_id = UnicodeAttribute(attr_name="connectionId")
    user_id = UnicodeAttribute(attr_name="userId")
    name = UnicodeAttribute()
    joined_at = NumberAttribute(attr_name="joinedAt")
    # What the connection may do in the room, decided at join from its grants (`rw`, `rwm`):
    # the fan-out reads it from the same Query, so no frame reaches a connection without `r`.
    actions = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(attr_name="expiresAt")
    by_connection = ByConnectionIndex()


class ByReaderIndex(GlobalSecondaryIndex["ReadCursor"]):
    """The rooms a user joined or read, with their read cursor: `get_rooms` without a Scan."""

    class Meta:
        index_name = "ByReader"
        projection = IncludeProjection(["messageId"])

    reader_id = UnicodeAttribute(hash_key=True, attr_name="readerId")
    room_id = UnicodeAttribute(range_key=True, attr_name="roomId")


class ReadCursor(_RoomItem):
    """A user's read position in a room: `memberKey = r#<userId>`, in the room's partition, never expiring."""

    message_id = UnicodeAttribute(null=True, attr_name="messageId")  # none until the first mark_read
    reader_id = UnicodeAttribute(null=True, attr_name="readerId")  # set at join and mark_read: lists the room
    by_reader = ByReaderIndex()


class RoomParticipant(_RoomItem):
    """A user in a room (`memberKey = u#<userId>`): how many of their connections are in it.

    Written by join and leave, so neither reads the whole room; expires like a membership, since
    every one of the user's connections joined before its last refresh.
    """

    user_id = UnicodeAttribute(attr_name="userId")
    name = UnicodeAttribute()
    connections = NumberAttribute(default=0)
    expires_at = TTLAttribute(attr_name="expiresAt")


class RoomSize(_RoomItem):
    """The room's participant count (`memberKey = n#`), moved by one when a user arrives or leaves."""

    participants = NumberAttribute(default=0)


class PresenceRecord(_RoomItem):
    """An arrival or departure in a large room (`memberKey = p#<ULID>`): the table's stream hands
    these to the presence function, which coalesces them; TTL removes them after an hour."""

    user_id = UnicodeAttribute(attr_name="userId")
    name = UnicodeAttribute()
    change = UnicodeAttribute()  # "joined" or "left"
    at_ms = NumberAttribute(attr_name="atMs")
    expires_at = TTLAttribute(attr_name="expiresAt")


class ByChangeIndex(GlobalSecondaryIndex["StoredMessage"]):
    """A room's changed messages, by the time of their last change: a rejoin reads the ones changed
    while the client was away. Sparse (only a change sets `changedAtMs`), and ALL attributes, so
    that one Query answers their current copies, with no read of the table after it."""

    class Meta:
        index_name = "ByChange"
        projection = AllProjection()

    room_id = UnicodeAttribute(hash_key=True, attr_name="roomId")
    changed_at_ms = NumberAttribute(range_key=True, attr_name="changedAtMs")


class StoredMessage(_Table):
    """A chat message (`MessagesTable`): ULID range keys give history in time order."""

    class Meta(_Meta):
        table_name = settings.messages_table

    room_id = UnicodeAttribute(hash_key=True, attr_name="roomId")
    message_id = UnicodeAttribute(range_key=True, attr_name="messageId")
    user_id = UnicodeAttribute(attr_name="userId")
    name = UnicodeAttribute()
    text = UnicodeAttribute(null=True, attr_name="message")  # removed when deleted
    timestamp = UnicodeAttribute()
    client_message_id = UnicodeAttribute(null=True, attr_name="clientMessageId")
    edited_at = UnicodeAttribute(null=True, attr_name="editedAt")
    deleted_by = UnicodeAttribute(null=True, attr_name="deletedBy")  # a tombstone: `message` is removed
    deleted_at = UnicodeAttribute(null=True, attr_name="deletedAt")
    reactions = MapAttribute(null=True)  # emoji -> string set of user ids; {} from the start, so ADD can path into it
    version = NumberAttribute(null=True)  # 1 when stored, +1 per change write; absent (0) on items stored before
    # Epoch ms of the last edit, deletion or reaction change, set in its write; absent until the
    # first, so the index holds only changed messages (none stored before this attribute existed).
    changed_at_ms = NumberAttribute(null=True, attr_name="changedAtMs")
    by_change = ByChangeIndex()


class IdempotencyRecord(_Table):
    """The first message stored for (user, room, clientMessageId); a retry finds it here for 24 h."""

    class Meta(_Meta):
        table_name = settings.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    message_id = UnicodeAttribute(attr_name="messageId")
    user_id = UnicodeAttribute(attr_name="userId")
    name = UnicodeAttribute()
    text = UnicodeAttribute(attr_name="message")
    timestamp = UnicodeAttribute()
    expires_at = TTLAttribute(attr_name="expiresAt")


class FanoutClaim(_Table):
    """The connections one fan-out shard has claimed (`key = fanout#<deliveryId>#<shard>`), so a
    retried shard skips them; expired by TTL after a day."""

    class Meta(_Meta):
        table_name = settings.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    claimed = UnicodeSetAttribute(default=set)
    expires_at = TTLAttribute(attr_name="expiresAt")


class FanoutPlan(_Table):
    """How a continuation cut one page of a large room into shards (`key = fanplan#<deliveryId>#<after>`),
    written once, so every attempt cuts that page alike (`parley.core.model.PagePlan`); TTL after a day."""

    class Meta(_Meta):
        table_name = settings.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    first_shard = NumberAttribute(attr_name="firstShard")
    bounds = ListAttribute(of=UnicodeAttribute)
    more = BooleanAttribute()
    expires_at = TTLAttribute(attr_name="expiresAt")


class RateCounter(_Table):
    """Requests one user made in one fixed window (`key = rate#<kind>#<userId>#<window>`), expired by TTL."""

    class Meta(_Meta):
        table_name = settings.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    expires_at = TTLAttribute(attr_name="expiresAt")
