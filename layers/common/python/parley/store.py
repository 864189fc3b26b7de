"""The storage interface the chat service needs, and its DynamoDB implementation.

The service sees plain dataclasses and a handful of operations, each mapping to one
DynamoDB call (or one paginated Query), so the cost of a request can be read off the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from .tables import (
    MEMBER_PREFIX,
    READ_CURSOR_PREFIX,
    Connection,
    IdempotencyRecord,
    RateCounter,
    Membership,
    ReadCursor,
    StoredMessage,
)


@dataclass(frozen=True)
class Member:
    room_id: str
    connection_id: str
    user_id: str
    name: str
    joined_at: int


@dataclass(frozen=True)
class ChatMessage:
    room_id: str
    message_id: str
    user_id: str
    name: str
    text: str
    timestamp: str
    client_message_id: str | None = None

    def to_wire(self) -> dict[str, str]:
        wire = {
            "messageId": self.message_id,
            "roomId": self.room_id,
            "userId": self.user_id,
            "name": self.name,
            "message": self.text,
            "timestamp": self.timestamp,
        }
        if self.client_message_id is not None:
            wire["clientMessageId"] = self.client_message_id
        return wire


@dataclass(frozen=True)
class HistoryPage:
    messages: list[ChatMessage]
    has_more: bool


class ChatStore(Protocol):
    def add_connection(self, connection_id: str, user_id: str, name: str, connected_at_ms: int) -> None: ...
    def remove_connection(self, connection_id: str) -> None: ...
    def room_members(self, room_id: str) -> list[Member]: ...
    def is_member(self, room_id: str, connection_id: str) -> bool: ...
    def add_member(self, member: Member) -> None: ...
    def remove_member(self, room_id: str, connection_id: str) -> Member | None: ...
    def rooms_of(self, connection_id: str) -> list[str]: ...
    def remove_memberships(self, connection_id: str, room_ids: list[str]) -> None: ...
    def put_message(self, message: ChatMessage, *, only_if_new: bool = False) -> bool: ...
    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None: ...
    def newest_messages(self, room_id: str, limit: int, before: str | None = None) -> HistoryPage: ...
    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage: ...
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool: ...
    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int: ...


def _is_condition_failure(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def idempotency_key(user_id: str, room_id: str, client_message_id: str) -> str:
    return f"{user_id}#{room_id}#{client_message_id}"


class DynamoChatStore:
    """`ChatStore` on the four tables of template.yaml. Nothing here Scans."""

    def __init__(self, connection_ttl_seconds: int, idempotency_ttl_seconds: int) -> None:
        self._connection_ttl = timedelta(seconds=connection_ttl_seconds)
        self._idempotency_ttl = timedelta(seconds=idempotency_ttl_seconds)

    # connections ---------------------------------------------------------------------------
    def add_connection(self, connection_id: str, user_id: str, name: str, connected_at_ms: int) -> None:
        Connection(
            connection_id, user_id=user_id, name=name, connected_at=connected_at_ms, expires_at=self._connection_ttl
        ).save()

    def remove_connection(self, connection_id: str) -> None:
        Connection(connection_id).delete()

    # memberships ---------------------------------------------------------------------------
    def room_members(self, room_id: str) -> list[Member]:
        return [
            Member(room_id, item.connection_id, item.user_id, item.name, int(item.joined_at))
            for item in Membership.query(room_id, Membership.member_key.startswith(MEMBER_PREFIX))
        ]

    def is_member(self, room_id: str, connection_id: str) -> bool:
        try:
            Membership.get(room_id, MEMBER_PREFIX + connection_id, attributes_to_get=["memberKey"])
        except DoesNotExist:
            return False
        return True

    def add_member(self, member: Member) -> None:
        Membership(
            member.room_id,
            MEMBER_PREFIX + member.connection_id,
            connection_id=member.connection_id,
            user_id=member.user_id,
            name=member.name,
            joined_at=member.joined_at,
            expires_at=self._connection_ttl,
        ).save()

    def remove_member(self, room_id: str, connection_id: str) -> Member | None:
        response = Membership._get_connection().delete_item(
            room_id, MEMBER_PREFIX + connection_id, return_values="ALL_OLD"
        )
        old = response.get("Attributes")
        if not old:
            return None
        item = Membership.from_raw_data(old)
        return Member(room_id, connection_id, item.user_id, item.name, int(item.joined_at))

    def rooms_of(self, connection_id: str) -> list[str]:
        return [item.room_id for item in Membership.by_connection.query(connection_id)]

    def remove_memberships(self, connection_id: str, room_ids: list[str]) -> None:
        with Membership.batch_write() as batch:
            for room_id in room_ids:
                batch.delete(Membership(room_id, MEMBER_PREFIX + connection_id))

    # messages ------------------------------------------------------------------------------
    def put_message(self, message: ChatMessage, *, only_if_new: bool = False) -> bool:
        """Store a message; with `only_if_new`, False (and nothing written) when it is already stored."""
        item = StoredMessage(
            message.room_id,
            message.message_id,
            user_id=message.user_id,
            name=message.name,
            text=message.text,
            timestamp=message.timestamp,
            client_message_id=message.client_message_id,
        )
        try:
            item.save(condition=StoredMessage.message_id.does_not_exist() if only_if_new else None)
        except PutError as error:
            if only_if_new and _is_condition_failure(error):
                return False
            raise
        return True

    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None:
        """Record `message` as the one for its clientMessageId; return the earlier one if there is one."""
        assert message.client_message_id is not None
        key = idempotency_key(message.user_id, message.room_id, message.client_message_id)
        record = IdempotencyRecord(
            key,
            message_id=message.message_id,
            user_id=message.user_id,
            name=message.name,
            text=message.text,
            timestamp=message.timestamp,
            expires_at=self._idempotency_ttl,
        )
        try:
            record.save(condition=IdempotencyRecord.key.does_not_exist())
            return None
        except PutError as error:
            if not _is_condition_failure(error):
                raise
        original = IdempotencyRecord.get(key, consistent_read=True)
        return ChatMessage(
            message.room_id,
            original.message_id,
            original.user_id,
            original.name,
            original.text,
            original.timestamp,
            message.client_message_id,
        )

    @staticmethod
    def _to_message(item: StoredMessage) -> ChatMessage:
        return ChatMessage(
            item.room_id, item.message_id, item.user_id, item.name, item.text, item.timestamp, item.client_message_id
        )

    def newest_messages(self, room_id: str, limit: int, before: str | None = None) -> HistoryPage:
        condition = StoredMessage.message_id < before if before else None
        items = list(
            StoredMessage.query(room_id, condition, scan_index_forward=False, limit=limit + 1, page_size=limit + 1)
        )
        page = [self._to_message(item) for item in items[:limit]]
        page.reverse()
        return HistoryPage(page, has_more=len(items) > limit)

    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage:
        items = list(
            StoredMessage.query(
                room_id, StoredMessage.message_id > since, scan_index_forward=True, limit=limit + 1, page_size=limit + 1
            )
        )
        return HistoryPage([self._to_message(item) for item in items[:limit]], has_more=len(items) > limit)

    # read cursors --------------------------------------------------------------------------
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        """Move the cursor forward only; False when it already stood at or past `message_id`."""
        cursor = ReadCursor(room_id, READ_CURSOR_PREFIX + user_id)
        try:
            cursor.update(
                actions=[ReadCursor.message_id.set(message_id)],
                condition=ReadCursor.message_id.does_not_exist() | (ReadCursor.message_id < message_id),
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # rate limits ---------------------------------------------------------------------------
    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int:
        """Count `hits` requests in the user's fixed window number `window`, in one UpdateItem.

        Returns the requests counted so far in that window (these included); the counter expires
        after `keep_seconds`. Counting refused requests too is what lets the service tell a burst
        from a flood; refusals an environment remembered arrive here in batches.
        """
        counter = RateCounter(f"rate#{kind}#{user_id}#{window}")
        counter.update(actions=[RateCounter.hits.add(hits), RateCounter.expires_at.set(timedelta(seconds=keep_seconds))])
        return int(counter.hits)
