"""`ChatStore` on the four DynamoDB tables of template.yaml, through the PynamoDB models in `tables`.

Each operation is one DynamoDB call (or one paginated Query), so the cost of a request reads off
`ChatService`. Each model has one mapping to and one from its domain type, below. Nothing Scans.
"""

from __future__ import annotations

from datetime import timedelta

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from ..core.model import ChatMessage, HistoryPage, Member
from .keys import MEMBER_PREFIX, idempotency_key, member_key, rate_counter_key, read_cursor_key
from .tables import Connection, IdempotencyRecord, Membership, RateCounter, ReadCursor, StoredMessage


def _is_condition_failure(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


# ---- row <-> domain, one pair per model ------------------------------------------------------


def _membership_row(member: Member, ttl: timedelta) -> Membership:
    return Membership(
        member.room_id,
        member_key(member.connection_id),
        connection_id=member.connection_id,
        user_id=member.user_id,
        name=member.name,
        joined_at=member.joined_at,
        expires_at=ttl,
    )


def _member_of(row: Membership) -> Member:
    return Member(row.room_id, row.connection_id, row.user_id, row.name, int(row.joined_at))


def _message_row(message: ChatMessage) -> StoredMessage:
    return StoredMessage(
        message.room_id,
        message.message_id,
        user_id=message.user_id,
        name=message.name,
        text=message.text,
        timestamp=message.timestamp,
        client_message_id=message.client_message_id,
    )


def _message_of(row: StoredMessage) -> ChatMessage:
    return ChatMessage(row.room_id, row.message_id, row.user_id, row.name, row.text, row.timestamp, row.client_message_id)


def _idempotency_row(message: ChatMessage, ttl: timedelta) -> IdempotencyRecord:
    assert message.client_message_id is not None
    return IdempotencyRecord(
        idempotency_key(message.user_id, message.room_id, message.client_message_id),
        message_id=message.message_id,
        user_id=message.user_id,
        name=message.name,
        text=message.text,
        timestamp=message.timestamp,
        expires_at=ttl,
    )


def _message_of_record(row: IdempotencyRecord, room_id: str, client_message_id: str) -> ChatMessage:
    """The record's key holds the room and the clientMessageId; the caller passes them back in."""
    return ChatMessage(room_id, row.message_id, row.user_id, row.name, row.text, row.timestamp, client_message_id)


class DynamoChatStore:
    """`parley.core.ports.ChatStore` on DynamoDB."""

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
        return [_member_of(row) for row in Membership.query(room_id, Membership.member_key.startswith(MEMBER_PREFIX))]

    def is_member(self, room_id: str, connection_id: str) -> bool:
        try:
            Membership.get(room_id, member_key(connection_id), attributes_to_get=["memberKey"])
        except DoesNotExist:
            return False
        return True

    def add_member(self, member: Member) -> None:
        _membership_row(member, self._connection_ttl).save()

    def remove_member(self, room_id: str, connection_id: str) -> bool:
        """One conditional DeleteItem: the condition tells whether there was a membership to remove."""
        try:
            Membership(room_id, member_key(connection_id)).delete(condition=Membership.member_key.exists())
        except DeleteError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def rooms_of(self, connection_id: str) -> list[str]:
        return [row.room_id for row in Membership.by_connection.query(connection_id)]

    def remove_memberships(self, connection_id: str, room_ids: list[str]) -> None:
        with Membership.batch_write() as batch:
            for room_id in room_ids:
                batch.delete(Membership(room_id, member_key(connection_id)))

    # messages ------------------------------------------------------------------------------
    def put_message(self, message: ChatMessage, *, only_if_new: bool = False) -> bool:
        try:
            _message_row(message).save(condition=StoredMessage.message_id.does_not_exist() if only_if_new else None)
        except PutError as error:
            if only_if_new and _is_condition_failure(error):
                return False
            raise
        return True

    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None:
        assert message.client_message_id is not None
        record = _idempotency_row(message, self._idempotency_ttl)
        try:
            record.save(condition=IdempotencyRecord.key.does_not_exist())
            return None
        except PutError as error:
            if not _is_condition_failure(error):
                raise
        original = IdempotencyRecord.get(record.key, consistent_read=True)
        return _message_of_record(original, message.room_id, message.client_message_id)

    def newest_messages(self, room_id: str, limit: int, before: str | None = None) -> HistoryPage:
        condition = StoredMessage.message_id < before if before else None
        rows = list(StoredMessage.query(room_id, condition, scan_index_forward=False, limit=limit + 1, page_size=limit + 1))
        page = [_message_of(row) for row in rows[:limit]]
        page.reverse()
        return HistoryPage(page, has_more=len(rows) > limit)

    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage:
        rows = list(
            StoredMessage.query(
                room_id, StoredMessage.message_id > since, scan_index_forward=True, limit=limit + 1, page_size=limit + 1
            )
        )
        return HistoryPage([_message_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    # read cursors --------------------------------------------------------------------------
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        cursor = ReadCursor(room_id, read_cursor_key(user_id))
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
        """One UpdateItem (ADD). Counting refused requests too is what lets the service tell a burst
        from a flood; refusals an environment remembered arrive here in batches."""
        counter = RateCounter(rate_counter_key(kind, user_id, window))
        counter.update(actions=[RateCounter.hits.add(hits), RateCounter.expires_at.set(timedelta(seconds=keep_seconds))])
        return int(counter.hits)
