"""`ChatStore` on the four DynamoDB tables of template.yaml, through the PynamoDB models in `tables`.

Each operation is one DynamoDB call (or one paginated Query), so the cost of a request reads off
`ChatService`. Each model has one mapping to and one from its domain type, below. Nothing Scans.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

from botocore.exceptions import ClientError
from pynamodb.constants import ALL_NEW, ALL_OLD, UPDATED_NEW
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from ..core.ids import new_ulid, ulid_time_ms
from ..core.model import (
    LEGACY_MEMBER_ACTIONS,
    ChangeResult,
    ChatMessage,
    HistoryPage,
    JoinOutcome,
    LeaveOutcome,
    Member,
    MembersPage,
    PagePlan,
    Participant,
    ParticipantsPage,
    PresenceChange,
    RequestCharge,
)
from ..core.room_list import RoomActivity
from .keys import (
    MEMBER_PREFIX,
    PARTICIPANT_PREFIX,
    ROOM_SIZE_KEY,
    fanout_claim_key,
    fanout_plan_key,
    idempotency_key,
    member_key,
    participant_key,
    presence_key,
    rate_counter_key,
    read_cursor_key,
)
from .tables import (
    ByChangeIndex,
    FanoutClaim,
    FanoutPlan,
    IdempotencyRecord,
    Membership,
    PresenceRecord,
    RateCounter,
    ReadCursor,
    RoomParticipant,
    RoomSize,
    StoredMessage,
)

T = TypeVar("T")

# The ADD action every change write of a message ends with, and the SET action its SET clause
# holds (`_change` names their operands): the version and the change time move in the change's write.
_BUMP = "#version :one"
_STAMP = "#changed = :changed"

PRESENCE_RECORD_TTL = timedelta(hours=1)
# get_rooms reads each listed room's newest message; this many Queries at once keeps 500 rooms
# (MAX_LISTED_ROOMS) to a few dozen round trips in a 256 MB function.
ROOM_READS_IN_FLIGHT = 16


def _table(model: Any) -> Any:
    """The model's PynamoDB table connection (one botocore client and pool per environment), for the
    few calls its model API cannot make cheaply: projected raw Queries, ALL_OLD return values,
    hand-written expressions. The one place this store reaches past the models (PynamoDB keeps it
    private); tests/dynamodb_local pins every call made through it."""
    return model._get_connection()


def _client(model: Any) -> Any:
    """The botocore client under `_table(model)`; built on first use, so touch it before threads share it."""
    return _table(model).connection.client


def _is_condition_failure(error: Exception) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _delete_participant(room_id: str, key: str, condition: Any) -> str | None:
    """One conditional DeleteItem of a participant item: the user's name from the item it removed
    (ALL_OLD; "" when there was none), None when `condition` did not hold (nothing deleted)."""
    try:
        old = _table(RoomParticipant).delete_item(room_id, key, condition=condition, return_values=ALL_OLD)
    except DeleteError as error:
        if _is_condition_failure(error):
            return None
        raise
    return str(old.get("Attributes", {}).get(RoomParticipant.name.attr_name, {}).get("S", ""))


# ---- row <-> domain, one pair per model ------------------------------------------------------


def _membership_row(member: Member, ttl: timedelta) -> Membership:
    return Membership(
        member.room_id,
        member_key(member.connection_id),
        connection_id=member.connection_id,
        user_id=member.user_id,
        name=member.name,
        joined_at=member.joined_at,
        actions=member.actions,
        expires_at=ttl,
    )


_MEMBER_ATTRIBUTES = [Membership.connection_id.attr_name, Membership.user_id.attr_name, Membership.name.attr_name,
                      Membership.joined_at.attr_name, Membership.actions.attr_name]


def _member_of_item(room_id: str, item: dict[str, Any]) -> Member:
    """A membership item as the Query returns it (DynamoDB JSON, `_MEMBER_ATTRIBUTES`) as a `Member`."""
    actions = item.get(Membership.actions.attr_name, {}).get("S")
    return Member(room_id, item[Membership.connection_id.attr_name]["S"], item[Membership.user_id.attr_name]["S"],
                  item[Membership.name.attr_name]["S"], int(item[Membership.joined_at.attr_name]["N"]),
                  actions or LEGACY_MEMBER_ACTIONS)


def _participant_of(row: RoomParticipant) -> Participant:
    return Participant(row.user_id, row.name)


def _presence_row(change: PresenceChange) -> PresenceRecord:
    return PresenceRecord(
        change.room_id,
        presence_key(new_ulid(change.at_ms)),
        user_id=change.user_id,
        name=change.name,
        change="joined" if change.joined else "left",
        at_ms=change.at_ms,
        expires_at=PRESENCE_RECORD_TTL,
    )


def _message_row(message: ChatMessage) -> StoredMessage:
    return StoredMessage(
        message.room_id,
        message.message_id,
        user_id=message.user_id,
        name=message.name,
        text=message.text,
        timestamp=message.timestamp,
        client_message_id=message.client_message_id,
        reactions={},  # there from the start, so `ADD reactions.#emoji` has a map to path into
        version=message.version,
    )


def _message_of(row: StoredMessage) -> ChatMessage:
    reactions = row.reactions.as_dict() if row.reactions is not None else {}
    return ChatMessage(
        row.room_id,
        row.message_id,
        row.user_id,
        row.name,
        row.text or "",
        row.timestamp,
        row.client_message_id,
        edited_at=row.edited_at,
        deleted_by=row.deleted_by,
        deleted_at=row.deleted_at,
        reactions={emoji: frozenset(users) for emoji, users in reactions.items() if users},
        version=int(row.version) if row.version is not None else 0,  # stored before versions: 0
    )


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


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
        self._reads_pool: ThreadPoolExecutor | None = None
        self._reads_lock = threading.Lock()

    # memberships ---------------------------------------------------------------------------
    def room_members_page(self, room_id: str, *, after: str | None, limit: int | None, upto: str | None = None,
                          consistent: bool = False) -> MembersPage:
        """One Query of the memberships (paged at 1 MB), read through PynamoDB's connection rather
        than its models, and only the attributes a `Member` holds; `limit + 1` items are asked for,
        so `more` is exact (a bare Limit would answer a LastEvaluatedKey for a room of exactly one page).

        Why raw: this Query is the fan-out list, and building a model per item cost about 60 us of CPU
        per member, 0.6 s at a room of 10,000 on one vCPU (at 1024 MB, 1 s); the raw items and the
        projection make it about 22 us (benchmarks/lambda_share_bench.py). A projection bills the
        same read units. `after` and `upto` are connection ids: the start key is built here from
        them, inside this room's member keys, so no cursor can reach another partition or prefix.
        `consistent` doubles the read units (1 RRU for a small room instead of 0.5): only a change's
        audience needs it (`ChatStore.room_members_page`)."""
        if upto is None:
            condition = Membership.member_key.startswith(MEMBER_PREFIX)
        else:
            condition = Membership.member_key.between(MEMBER_PREFIX, member_key(upto))
        start = {"roomId": {"S": room_id}, "memberKey": {"S": member_key(after)}} if after is not None else None
        want = None if limit is None else limit + 1
        members: list[Member] = []
        while True:
            page = _table(Membership).query(
                room_id, range_key_condition=condition, attributes_to_get=_MEMBER_ATTRIBUTES, exclusive_start_key=start,
                limit=None if want is None else want - len(members), consistent_read=consistent,
            )
            members += [_member_of_item(room_id, item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start or (want is not None and len(members) >= want):
                break
        if limit is None:
            return MembersPage(members, more=False)
        return MembersPage(members[:limit], more=len(members) > limit)

    def first_page_and_count(self, room_id: str, limit: int, charge: RequestCharge) -> tuple[MembersPage, int]:
        """The counter's UpdateItem on a pool thread while this one Queries the room: a room action
        waits for the slower of the two round trips, not their sum (the handler waits, it does not
        compute: this is most of a small room's duration, and so of its Lambda bill)."""
        return self._with_count(charge, lambda: self.room_members_page(room_id, after=None, limit=limit))

    def membership_and_count(self, room_id: str, connection_id: str, charge: RequestCharge) -> tuple[bool, int]:
        """`is_member`'s GetItem and the counter's UpdateItem side by side, as `first_page_and_count`."""
        return self._with_count(charge, lambda: self.is_member(room_id, connection_id))

    def _with_count(self, charge: RequestCharge, read: Callable[[], T]) -> tuple[T, int]:
        """`read` (of the memberships) here while the counter's UpdateItem runs on a pool thread."""
        _client(RateCounter), _client(Membership)  # built here, so the two threads never build one at once
        hits = self._reads().submit(self.count_request, charge.kind, charge.user_id, charge.window, charge.keep_seconds, charge.hits)
        try:
            result = read()
        finally:
            counted = hits.result()  # never leave the write running behind a failed read
        return result, counted

    def plan_fanout_page(self, delivery_id: str, after: str, plan: PagePlan) -> PagePlan:
        """One conditional PutItem; when an earlier attempt's plan is there, DynamoDB answers it with
        the refusal (ReturnValuesOnConditionCheckFailure, no extra read). A plan is a few dozen
        connection ids: under 1 KB, 1 WRU per page of the room."""
        row = FanoutPlan(fanout_plan_key(delivery_id, after), first_shard=plan.first_shard, bounds=list(plan.bounds),
                         more=plan.more, expires_at=self._idempotency_ttl)
        try:
            _client(FanoutPlan).put_item(
                TableName=FanoutPlan.Meta.table_name, Item=row.serialize(),
                ConditionExpression="attribute_not_exists(#key)", ExpressionAttributeNames={"#key": FanoutPlan.key.attr_name},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return plan
        except ClientError as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise
            old = FanoutPlan.from_raw_data(error.response["Item"])
        return PagePlan(int(old.first_shard), tuple(old.bounds), bool(old.more))

    def is_member(self, room_id: str, connection_id: str) -> bool:
        """A strongly consistent GetItem: a member who sends right after their join's answer is one."""
        try:
            Membership.get(room_id, member_key(connection_id), consistent_read=True, attributes_to_get=["memberKey"])
        except DoesNotExist:
            return False
        return True

    def join_room(self, member: Member) -> JoinOutcome:
        """A conditional PutItem of the membership, then (when new) one UpdateItem on the user's
        participant item and, for their first connection, one on the room's size."""
        try:
            _membership_row(member, self._connection_ttl).save(condition=Membership.member_key.does_not_exist())
        except PutError as error:
            if not _is_condition_failure(error):
                raise
            return JoinOutcome(False, False, self.room_size(member.room_id))
        participant = RoomParticipant(member.room_id, participant_key(member.user_id))
        participant.update(actions=[
            RoomParticipant.connections.add(1),
            RoomParticipant.user_id.set(member.user_id),
            RoomParticipant.name.set(RoomParticipant.name | member.name),  # the earliest connection's name
            RoomParticipant.expires_at.set(self._connection_ttl),
        ])
        if int(participant.connections) != 1:
            return JoinOutcome(True, False, self.room_size(member.room_id))
        return JoinOutcome(True, True, self._move_room_size(member.room_id, +1))

    def leave_room(self, room_id: str, connection_id: str, user_id: str | None) -> LeaveOutcome:
        """The user's last connection in the room (the common case): the membership's conditional
        DeleteItem, the participant's conditional DeleteItem and the room size's UpdateItem, three
        calls. Another of their connections still in it: a failed conditional delete, then ADD -1.

        The membership delete answers the item it removed (ALL_OLD, no read units), so a leave
        whose caller does not know the user reads it from there, with no GetItem first; and a retry,
        or a second clean-up of the same connection, finds nothing to delete and writes nothing.
        The room size is read only for the room's hearing of a departure, which only the last
        connection causes (`LeaveOutcome.room_size` is 0 otherwise)."""
        try:
            removed = _table(Membership).delete_item(
                room_id, member_key(connection_id), condition=Membership.member_key.exists(), return_values=ALL_OLD,
            )
        except DeleteError as error:
            if _is_condition_failure(error):
                return LeaveOutcome(False, False, 0)
            raise
        if user_id is None:  # a $disconnect without the authorizer's context: the membership says who it was
            user_id = removed["Attributes"][Membership.user_id.attr_name]["S"]
        name = self._remove_participant(room_id, user_id)
        if name is None:
            return LeaveOutcome(True, False, 0)
        return LeaveOutcome(True, True, self._move_room_size(room_id, -1), name)

    @staticmethod
    def _remove_participant(room_id: str, user_id: str) -> str | None:
        """Count one connection of the user out of the room: their name when this took their count
        to zero (the room hears of the departure), None while another connection is still in.

        First the delete that holds when this was the last connection (`connections <= 1`; an item
        TTL already removed counts as one), answering the deleted item for its name: one call. When
        it fails, another connection is in: ADD -1. Should that reach 0, the other connection left
        between the two calls (its own delete failed too, this one still being counted), so this is
        the departure, and the item goes unless a join came in between: that join's ADD took the
        count from 0 to 1 and counted itself as an arrival (room size +1), so the departure is still
        this one's to count (room size -1). Counts and announcements pair up in every interleaving,
        and the item is there exactly while the user has a connection in the room."""
        key = participant_key(user_id)
        name = _delete_participant(room_id, key, (RoomParticipant.connections <= 1) | RoomParticipant.connections.does_not_exist())
        if name is not None:
            return name
        updated = _table(RoomParticipant).update_item(
            room_id, key, actions=[RoomParticipant.connections.add(-1)], return_values=ALL_NEW,
        )["Attributes"]
        if int(updated[RoomParticipant.connections.attr_name]["N"]) > 0:
            return None
        _delete_participant(room_id, key, RoomParticipant.connections <= 0)
        return str(updated.get(RoomParticipant.name.attr_name, {}).get("S", ""))

    def _move_room_size(self, room_id: str, by: int) -> int:
        size = RoomSize(room_id, ROOM_SIZE_KEY)
        size.update(actions=[RoomSize.participants.add(by)])
        return max(0, int(size.participants))

    def room_size(self, room_id: str) -> int:
        try:
            return max(0, int(RoomSize.get(room_id, ROOM_SIZE_KEY).participants))
        except DoesNotExist:
            return 0

    def participants(self, room_id: str, *, after_user: str | None, limit: int) -> ParticipantsPage:
        start = {"roomId": {"S": room_id}, "memberKey": {"S": participant_key(after_user)}} if after_user is not None else None
        rows = list(RoomParticipant.query(
            room_id, RoomParticipant.member_key.startswith(PARTICIPANT_PREFIX),
            limit=limit + 1, page_size=limit + 1, last_evaluated_key=start,
        ))
        return ParticipantsPage([_participant_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def has_participant(self, room_id: str, user_id: str) -> bool:
        try:
            RoomParticipant.get(room_id, participant_key(user_id), attributes_to_get=["memberKey"])
        except DoesNotExist:
            return False
        return True

    def add_presence_change(self, change: PresenceChange) -> None:
        _presence_row(change).save()

    def claim_deliveries(self, delivery_id: str, shard: int, connection_ids: list[str]) -> list[str]:
        """One UpdateItem ADD of the connections to the shard's claims, answering the item as it was
        before (ALL_OLD: the claims item is small, and returning it costs no read units; moto leaves
        an unchanged set out of UPDATED_OLD): the fresh ones are those not claimed. One round trip per
        chunk (a GetItem first would double a shard's DynamoDB wait), and atomic, so not even two
        overlapping attempts could both claim a connection."""
        if not connection_ids:
            return []
        response = _table(FanoutClaim).update_item(
            fanout_claim_key(delivery_id, shard),
            actions=[FanoutClaim.claimed.add(set(connection_ids)), FanoutClaim.expires_at.set(self._idempotency_ttl)],
            return_values=ALL_OLD,
        )
        before = set(response.get("Attributes", {}).get("claimed", {}).get("SS", []))
        return [cid for cid in connection_ids if cid not in before]

    def rooms_of(self, connection_id: str) -> list[str]:
        return [row.room_id for row in Membership.by_connection.query(connection_id)]

    def members_among(self, room_id: str, connection_ids: Sequence[str]) -> set[str]:
        """Keys only (a projection bills the items' full size: about 0.04 read units per member
        strongly consistent), paged at 1 MB. Strongly consistent: a membership just deleted must not
        be reported present, nor one present reported gone."""
        if not connection_ids:
            return set()
        key = Membership.member_key.attr_name
        request: dict[str, Any] = {
            "TableName": Membership.Meta.table_name, "ConsistentRead": True, "ProjectionExpression": "#key",
            "KeyConditionExpression": "roomId = :room AND #key BETWEEN :low AND :high", "ExpressionAttributeNames": {"#key": key},
            "ExpressionAttributeValues": {":room": {"S": room_id}, ":low": {"S": member_key(min(connection_ids))},
                                          ":high": {"S": member_key(max(connection_ids))}},
        }
        found: set[str] = set()
        while True:
            page = _client(Membership).query(**request)
            found.update(item[key]["S"][len(MEMBER_PREFIX):] for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return found & set(connection_ids)
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # Used by tools and tests that seed or clear memberships directly (no participant counting);
    # the chat rules use join_room and leave_room.
    def add_member(self, member: Member) -> None:
        _membership_row(member, self._connection_ttl).save()

    def remove_memberships(self, connection_id: str, room_ids: list[str]) -> None:
        with Membership.batch_write() as batch:
            for room_id in room_ids:
                batch.delete(Membership(room_id, member_key(connection_id)))

    # messages ------------------------------------------------------------------------------
    def put_message(self, message: ChatMessage) -> bool:
        """One PutItem with `attribute_not_exists(messageId)`: the same call and write units as a
        plain put when the id is new (always, but for two attempts of one clientMessageId)."""
        try:
            _message_row(message).save(condition=StoredMessage.message_id.does_not_exist())
        except PutError as error:
            if _is_condition_failure(error):
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

    def move_claim(self, claimed: ChatMessage, to: ChatMessage) -> ChatMessage | None:
        """One conditional UpdateItem; when refused (another retry moved it first), the record read again."""
        assert claimed.client_message_id is not None
        record = IdempotencyRecord(idempotency_key(claimed.user_id, claimed.room_id, claimed.client_message_id))
        try:
            record.update(actions=[IdempotencyRecord.message_id.set(to.message_id), IdempotencyRecord.timestamp.set(to.timestamp)],
                          condition=IdempotencyRecord.message_id == claimed.message_id)
        except UpdateError as error:
            if not _is_condition_failure(error):
                raise
            return _message_of_record(IdempotencyRecord.get(record.key, consistent_read=True),
                                      claimed.room_id, claimed.client_message_id)
        return None

    def stored_message(self, room_id: str, message_id: str) -> ChatMessage | None:
        try:
            return _message_of(StoredMessage.get(room_id, message_id, consistent_read=True))
        except DoesNotExist:
            return None

    def newest_messages(self, room_id: str, limit: int, before: str | None = None, *, consistent: bool = False) -> HistoryPage:
        condition = StoredMessage.message_id < before if before else None
        rows = list(StoredMessage.query(room_id, condition, scan_index_forward=False, limit=limit + 1, page_size=limit + 1,
                                        consistent_read=consistent))
        page = [_message_of(row) for row in rows[:limit]]
        page.reverse()
        return HistoryPage(page, has_more=len(rows) > limit)

    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage:
        """Strongly consistent: only a join reads these (`ChatStore.newest_messages`)."""
        rows = list(
            StoredMessage.query(
                room_id, StoredMessage.message_id > since, scan_index_forward=True, limit=limit + 1, page_size=limit + 1,
                consistent_read=True,
            )
        )
        return HistoryPage([_message_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def messages_changed_since(self, room_id: str, since: str, limit: int, *, max_read: int) -> HistoryPage:
        """Queries of ByChange (eventual: an index cannot read strongly), newest change first, with a
        FilterExpression leaving out the messages after `since`. DynamoDB applies the Limit before the
        filter (and bills what it read), so a page may keep fewer than it read. Each Query reads at
        most `limit` + 1 (a quiet room's whole answer is the first, one call), the next one from the
        last one's LastEvaluatedKey, until `limit` + 1 are kept, the index has no more, or `max_read`
        items were read. Pages of `limit` + 1, not the whole rest of `max_read` at once: DynamoDB
        reads (and bills) a page's Limit even when the ones wanted came early in it."""
        pages = StoredMessage.by_change.query(
            room_id, ByChangeIndex.changed_at_ms >= ulid_time_ms(since), filter_condition=StoredMessage.message_id <= since,
            scan_index_forward=False, page_size=min(limit + 1, max_read),
        ).page_iter
        kept: list[ChatMessage] = []
        read = 0
        for page in pages:
            read += page["ScannedCount"]
            kept += [_message_of(StoredMessage.from_raw_data(item)) for item in page.get("Items", [])]
            if len(kept) > limit or read >= max_read:
                break
            pages.page_size = min(limit + 1, max_read - read)
        unread = pages.last_evaluated_key is not None
        return HistoryPage(kept[:limit], has_more=len(kept) > limit or (unread and read >= max_read))

    # read cursors --------------------------------------------------------------------------
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        cursor = ReadCursor(room_id, read_cursor_key(user_id))
        try:
            cursor.update(
                actions=[ReadCursor.message_id.set(message_id), ReadCursor.reader_id.set(user_id)],
                condition=ReadCursor.message_id.does_not_exist() | (ReadCursor.message_id < message_id),
            )
        except UpdateError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # message changes: one conditional UpdateItem each ------------------------------------------
    def _change(self, room_id: str, message_id: str, update: str, condition: str, names: dict[str, str],
                values: dict[str, Any], at_ms: int) -> ChangeResult:
        """One conditional UpdateItem; a refused one returns the item as it stood (no extra read).

        `update` ends with `_BUMP` in its ADD clause and has `_STAMP` in its SET clause: the version
        and the change time move in the write that makes the change (an item stored before versions
        counts from 0), and a refused one moves nothing. The stamp puts the message in the ByChange
        index (one index write for its first change, two for a later one: the old entry's delete
        and the new one's put), which a rejoin reads for the changes it missed."""
        names = {**names, "#version": StoredMessage.version.attr_name, "#changed": StoredMessage.changed_at_ms.attr_name}
        values = {**values, ":one": {"N": "1"}, ":changed": {"N": str(at_ms)}}
        client = _client(StoredMessage)
        try:
            response = client.update_item(
                TableName=StoredMessage.Meta.table_name,
                Key={"roomId": {"S": room_id}, "messageId": {"S": message_id}},
                UpdateExpression=update,
                ConditionExpression="attribute_exists(messageId) AND attribute_not_exists(deletedBy) AND " + condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
            return ChangeResult(False, _message_of(StoredMessage.from_raw_data(old)) if old else None)
        return ChangeResult(True, _message_of(StoredMessage.from_raw_data(response["Attributes"])))

    def edit_message(self, room_id: str, message_id: str, author_id: str, text: str, edited_at: str, *,
                     at_ms: int) -> ChangeResult:
        return self._change(
            room_id, message_id,
            f"SET #text = :text, editedAt = :at, {_STAMP} ADD {_BUMP}",
            "userId = :author AND #text <> :text",
            {"#text": "message"},
            {":text": {"S": text}, ":at": {"S": edited_at}, ":author": {"S": author_id}},
            at_ms,
        )

    def delete_message(
        self, room_id: str, message_id: str, deleted_by: str, deleted_at: str, *, author_id: str | None, at_ms: int
    ) -> ChangeResult:
        values: dict[str, Any] = {":by": {"S": deleted_by}, ":at": {"S": deleted_at}, ":empty": {"M": {}}}
        condition = "attribute_exists(userId)"
        if author_id is not None:
            condition = "userId = :author"
            values[":author"] = {"S": author_id}
        return self._change(
            room_id, message_id,
            f"SET deletedBy = :by, deletedAt = :at, reactions = :empty, {_STAMP} REMOVE #text, editedAt ADD {_BUMP}",
            condition, {"#text": "message"}, values, at_ms,
        )

    def react(self, room_id: str, message_id: str, user_id: str, emoji: str, *, remove: bool, max_distinct: int,
              at_ms: int) -> ChangeResult:
        values: dict[str, Any] = {":users": {"SS": [user_id]}, ":user": {"S": user_id}}
        if remove:
            update = f"SET {_STAMP} DELETE reactions.#emoji :users ADD {_BUMP}"
            condition = "contains(reactions.#emoji, :user)"
        else:
            update = f"SET {_STAMP} ADD reactions.#emoji :users, {_BUMP}"
            condition = (
                "attribute_exists(reactions) AND NOT contains(reactions.#emoji, :user)"
                " AND (attribute_exists(reactions.#emoji) OR size(reactions) < :max)"
            )
            values[":max"] = {"N": str(max_distinct)}
        try:
            result = self._change(room_id, message_id, update, condition, {"#emoji": emoji}, values, at_ms)
        except ClientError as error:
            if _error_code(error) != "ValidationException":
                raise
            result = ChangeResult(False, None)  # no `reactions` map to path into: an old message, or none
        if result.changed or (result.message is not None and result.message.deleted):
            return result
        # A message stored before reactions existed has no `reactions` map: give it one, once, and retry.
        if self._add_reactions_map(room_id, message_id):
            return self._change(room_id, message_id, update, condition, {"#emoji": emoji}, values, at_ms)
        return result

    @staticmethod
    def _add_reactions_map(room_id: str, message_id: str) -> bool:
        """Give an old message its empty `reactions` map; False when it already had one (or is gone)."""
        try:
            _client(StoredMessage).update_item(
                TableName=StoredMessage.Meta.table_name,
                Key={"roomId": {"S": room_id}, "messageId": {"S": message_id}},
                UpdateExpression="SET reactions = :empty",
                ConditionExpression="attribute_exists(messageId) AND attribute_not_exists(reactions)",
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
        except ClientError as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # unread counts and the rooms list ------------------------------------------------------
    def open_reader(self, room_id: str, user_id: str) -> str | None:
        cursor = ReadCursor(room_id, read_cursor_key(user_id))
        cursor.update(actions=[ReadCursor.reader_id.set(user_id)])  # ALL_NEW: the cursor comes back with it
        return cursor.message_id

    def count_messages_after(self, room_id: str, after: str | None, limit: int) -> int:
        client = _client(StoredMessage)
        condition, values = "roomId = :room", {":room": {"S": room_id}}
        if after is not None:
            condition += " AND messageId > :after"
            values[":after"] = {"S": after}
        response = client.query(
            TableName=StoredMessage.Meta.table_name, KeyConditionExpression=condition,
            ExpressionAttributeValues=values, Select="COUNT", Limit=limit,
        )
        return int(response["Count"])

    def reader_rooms(self, user_id: str, limit: int) -> list[RoomActivity]:
        """The reader index Query, then each room's newest message, the Queries run side by side
        so a user in many rooms waits for the slowest one, not their sum."""
        cursors = {row.room_id: row.message_id for row in ReadCursor.by_reader.query(user_id, limit=limit)}
        client = _client(StoredMessage)  # made here, shared by the threads
        newest = self._reads().map(lambda room_id: self._newest_message(client, room_id), cursors)
        return [RoomActivity.of(room_id, cursors[room_id], message) for room_id, message in zip(cursors, newest)]

    def _reads(self) -> ThreadPoolExecutor:
        with self._reads_lock:
            if self._reads_pool is None:
                self._reads_pool = ThreadPoolExecutor(max_workers=ROOM_READS_IN_FLIGHT, thread_name_prefix="rooms")
            return self._reads_pool

    @staticmethod
    def _newest_message(client: Any, room_id: str) -> ChatMessage | None:
        """One Query, newest first, Limit 1: the same read units as a GetItem of a copy of it."""
        response = client.query(
            TableName=StoredMessage.Meta.table_name, KeyConditionExpression=f"{StoredMessage.room_id.attr_name} = :room",
            ExpressionAttributeValues={":room": {"S": room_id}}, ScanIndexForward=False, Limit=1,
        )
        items = response.get("Items") or []
        return _message_of(StoredMessage.from_raw_data(items[0])) if items else None

    # rate limits ---------------------------------------------------------------------------
    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int:
        """One UpdateItem (ADD). Counting refused requests too is what lets the service tell a burst
        from a flood; refusals an environment remembered arrive here in batches."""
        # Through the table connection, not `RateCounter(...).update()`: a room action that has to
        # count makes this call, and the model's bookkeeping around it (an instance, ALL_NEW deserialised into it) cost
        # 0.5-0.9 ms of CPU of the call's 1.4-2.5 ms in this machine's measurements.
        response = _table(RateCounter).update_item(
            rate_counter_key(kind, user_id, window),
            actions=[RateCounter.hits.add(hits), RateCounter.expires_at.set(timedelta(seconds=keep_seconds))],
            return_values=UPDATED_NEW,
        )
        return int(response["Attributes"][RateCounter.hits.attr_name]["N"])
