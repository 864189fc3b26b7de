"""An in-memory `ChatStore` that keeps the DynamoDB store's contract, for driving the rules fast.

It holds the rows the DynamoDB tables would hold (same attribute names, same key formats from
`parley.aws.keys`), so an oracle that reads tables can read either store, and it honours what
the rules rely on: conditional writes (idempotency claims, message puts that never overwrite, forward-only read
cursors, deletes that report whether there was an item), `limit`/`hasMore` pagination in
ULID order, and rate counters that add up and expire.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

from parley.aws import keys
from parley.aws.keys import (
    MEMBER_PREFIX,
    idempotency_key,
    member_key,
    rate_counter_key,
    read_cursor_key,
)
from parley.core.ids import new_ulid, ulid_time_ms
from parley.core.model import (
    LEGACY_MEMBER_ACTIONS, ChangeResult, ChatMessage, HistoryPage, JoinOutcome, LeaveOutcome, Member, MembersPage,
    PagePlan, Participant, ParticipantsPage, PresenceChange, RequestCharge,
)
from parley.core.room_list import RoomActivity

Row = dict[str, Any]
TABLES = ("MembershipsTable", "MessagesTable", "IdempotencyTable")


class MemoryChatStore:
    """`parley.core.ports.ChatStore` in dicts; `calls` counts operations like DynamoDB calls."""

    def __init__(self, now_ms: Callable[[], int], *, connection_ttl_seconds: int = 2 * 3600 + 300,
                 idempotency_ttl_seconds: int = 24 * 3600) -> None:
        self._now_ms = now_ms
        self._connection_ttl = connection_ttl_seconds
        self._idempotency_ttl = idempotency_ttl_seconds
        self.memberships: dict[tuple[str, str], Row] = {}  # (roomId, memberKey)
        self.messages: dict[tuple[str, str], Row] = {}  # (roomId, messageId)
        self.idempotency: dict[str, Row] = {}  # key
        self.presence: list[PresenceChange] = []  # not yet handed to the presence function
        self.presence_rows: dict[str, Row] = {}  # every presence record written (TTL removes them in DynamoDB)
        self.calls: dict[str, int] = {}

    def _count(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def _expires(self, seconds: int) -> int:
        return self._now_ms() // 1000 + seconds

    # memberships ---------------------------------------------------------------------------
    def _members(self, room_id: str, after: str, upto: str | None) -> list[Member]:
        """The room's members with connection ids in (`after`, `upto`], in key order."""
        low, high = member_key(after), member_key(upto) if upto is not None else None
        rows = [row for (room, key), row in sorted(self.memberships.items())
                if room == room_id and key.startswith(MEMBER_PREFIX) and key > low and (high is None or key <= high)]
        return [Member(room_id, row["connectionId"], row["userId"], row["name"], row["joinedAt"],
                       row.get("actions", LEGACY_MEMBER_ACTIONS)) for row in rows]

    def room_members_page(self, room_id: str, *, after: str | None, limit: int | None, upto: str | None = None,
                          consistent: bool = False) -> MembersPage:
        self._count("room_members_page")
        members = self._members(room_id, after or "", upto)
        if limit is None:
            return MembersPage(members, more=False)
        return MembersPage(members[:limit], more=len(members) > limit)

    def first_page_and_count(self, room_id: str, limit: int, charge: RequestCharge) -> tuple[MembersPage, int]:
        """In order here; the DynamoDB store sends the two together."""
        hits = self.count_request(charge.kind, charge.user_id, charge.window, charge.keep_seconds, hits=charge.hits)
        return self.room_members_page(room_id, after=None, limit=limit), hits

    def membership_and_count(self, room_id: str, connection_id: str, charge: RequestCharge) -> tuple[bool, int]:
        hits = self.count_request(charge.kind, charge.user_id, charge.window, charge.keep_seconds, hits=charge.hits)
        return self.is_member(room_id, connection_id), hits

    def plan_fanout_page(self, delivery_id: str, after: str, plan: PagePlan) -> PagePlan:
        self._count("plan_fanout_page")
        key = keys.fanout_plan_key(delivery_id, after)
        row = self.idempotency.setdefault(key, {"key": key, "firstShard": plan.first_shard, "bounds": list(plan.bounds),
                                                "more": plan.more, "expiresAt": self._expires(self._idempotency_ttl)})
        return PagePlan(row["firstShard"], tuple(row["bounds"]), row["more"])

    def is_member(self, room_id: str, connection_id: str) -> bool:
        self._count("is_member")
        return (room_id, keys.member_key(connection_id)) in self.memberships

    def add_member(self, member: Member) -> None:
        self._count("add_member")
        self.memberships[(member.room_id, member_key(member.connection_id))] = {
            "roomId": member.room_id, "memberKey": member_key(member.connection_id), "connectionId": member.connection_id,
            "userId": member.user_id, "name": member.name, "joinedAt": member.joined_at, "actions": member.actions,
            "expiresAt": self._expires(self._connection_ttl),
        }

    def join_room(self, member: Member) -> JoinOutcome:
        self._count("join_room")
        key = (member.room_id, keys.member_key(member.connection_id))
        if key in self.memberships:
            return JoinOutcome(False, False, self._size(member.room_id))
        expires = self._expires(self._connection_ttl)
        self.memberships[key] = {
            "roomId": member.room_id, "memberKey": key[1], "connectionId": member.connection_id,
            "userId": member.user_id, "name": member.name, "joinedAt": member.joined_at, "actions": member.actions, "expiresAt": expires,
        }
        pkey = (member.room_id, keys.participant_key(member.user_id))
        participant = self.memberships.setdefault(pkey, {"roomId": member.room_id, "memberKey": pkey[1], "connections": 0})
        participant.setdefault("name", member.name)  # the earliest connection's name
        participant.update(userId=member.user_id, expiresAt=expires, connections=participant["connections"] + 1)
        if participant["connections"] != 1:
            return JoinOutcome(True, False, self._size(member.room_id))
        return JoinOutcome(True, True, self._move_size(member.room_id, +1))

    def leave_room(self, room_id: str, connection_id: str, user_id: str | None) -> LeaveOutcome:
        self._count("leave_room")
        membership = self.memberships.pop((room_id, keys.member_key(connection_id)), None)
        if membership is None:
            return LeaveOutcome(False, False, 0)
        user_id = membership["userId"] if user_id is None else user_id
        pkey = (room_id, keys.participant_key(user_id))
        participant = self.memberships.setdefault(pkey, {"roomId": room_id, "memberKey": pkey[1], "connections": 0})
        participant["connections"] -= 1
        if participant["connections"] > 0:
            return LeaveOutcome(True, False, 0)  # the size is read only for a departure, as DynamoChatStore does
        del self.memberships[pkey]
        return LeaveOutcome(True, True, self._move_size(room_id, -1), participant.get("name", ""))

    def _size(self, room_id: str) -> int:
        return max(0, self.memberships.get((room_id, keys.ROOM_SIZE_KEY), {}).get("participants", 0))

    def _move_size(self, room_id: str, by: int) -> int:
        row = self.memberships.setdefault((room_id, keys.ROOM_SIZE_KEY), {"roomId": room_id, "memberKey": keys.ROOM_SIZE_KEY, "participants": 0})
        row["participants"] += by
        return max(0, row["participants"])

    def room_size(self, room_id: str) -> int:
        self._count("room_size")
        return self._size(room_id)

    def participants(self, room_id: str, *, after_user: str | None, limit: int) -> ParticipantsPage:
        self._count("participants")
        after = keys.participant_key(after_user) if after_user is not None else ""
        rows = [row for (room, key), row in sorted(self.memberships.items())
                if room == room_id and key.startswith(keys.PARTICIPANT_PREFIX) and key > after]
        return ParticipantsPage([Participant(row["userId"], row["name"]) for row in rows[:limit]], has_more=len(rows) > limit)

    def has_participant(self, room_id: str, user_id: str) -> bool:
        self._count("has_participant")
        return (room_id, keys.participant_key(user_id)) in self.memberships

    def add_presence_change(self, change: PresenceChange) -> None:
        """Kept in order for `drain_presence`, as the table's stream would hand them on."""
        self._count("add_presence_change")
        self.presence.append(change)
        key = keys.presence_key(new_ulid(change.at_ms))
        self.presence_rows[key] = {"roomId": change.room_id, "memberKey": key, "userId": change.user_id, "name": change.name,
                                   "change": "joined" if change.joined else "left", "atMs": change.at_ms}

    def drain_presence(self) -> list[PresenceChange]:
        """The presence changes recorded since the last drain (the stream's next batch)."""
        changes, self.presence = self.presence, []
        return changes

    def claim_deliveries(self, delivery_id: str, shard: int, connection_ids: list[str]) -> list[str]:
        self._count("claim_deliveries")
        key = keys.fanout_claim_key(delivery_id, shard)
        row = self.idempotency.setdefault(key, {"key": key, "claimed": set(), "expiresAt": self._expires(self._idempotency_ttl)})
        fresh = [cid for cid in connection_ids if cid not in row["claimed"]]
        row["claimed"] |= set(fresh)
        return fresh

    def rooms_of(self, connection_id: str) -> list[str]:
        self._count("rooms_of")
        return sorted(room for (room, key), row in self.memberships.items() if row.get("connectionId") == connection_id)

    def members_among(self, room_id: str, connection_ids: Sequence[str]) -> set[str]:
        self._count("members_among")
        return {cid for cid in connection_ids if (room_id, member_key(cid)) in self.memberships}

    # messages ------------------------------------------------------------------------------
    def put_message(self, message: ChatMessage) -> bool:
        self._count("put_message")
        key = (message.room_id, message.message_id)
        if key in self.messages:
            return False
        row = {"roomId": message.room_id, "messageId": message.message_id, "userId": message.user_id,
               "name": message.name, "message": message.text, "timestamp": message.timestamp, "reactions": {},
               "version": message.version}
        if message.client_message_id is not None:
            row["clientMessageId"] = message.client_message_id
        self.messages[key] = row
        return True

    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None:
        self._count("claim_client_message_id")
        assert message.client_message_id is not None
        key = keys.idempotency_key(message.user_id, message.room_id, message.client_message_id)
        original = self.idempotency.get(key)
        if original is None:
            self.idempotency[key] = {"key": key, "messageId": message.message_id, "userId": message.user_id,
                                     "name": message.name, "message": message.text, "timestamp": message.timestamp,
                                     "expiresAt": self._expires(self._idempotency_ttl)}
            return None
        return ChatMessage(message.room_id, original["messageId"], original["userId"], original["name"],
                           original["message"], original["timestamp"], message.client_message_id)

    def move_claim(self, claimed: ChatMessage, to: ChatMessage) -> ChatMessage | None:
        self._count("move_claim")
        assert claimed.client_message_id is not None
        row = self.idempotency[keys.idempotency_key(claimed.user_id, claimed.room_id, claimed.client_message_id)]
        if row["messageId"] != claimed.message_id:
            return ChatMessage(claimed.room_id, row["messageId"], row["userId"], row["name"], row["message"], row["timestamp"],
                               claimed.client_message_id)
        row.update(messageId=to.message_id, timestamp=to.timestamp)
        return None

    def stored_message(self, room_id: str, message_id: str) -> ChatMessage | None:
        self._count("stored_message")
        row = self.messages.get((room_id, message_id))
        return None if row is None else self._message_of(row)

    @staticmethod
    def _message_of(row: Row) -> ChatMessage:
        return ChatMessage(
            row["roomId"], row["messageId"], row["userId"], row["name"], row.get("message", ""), row["timestamp"],
            row.get("clientMessageId"), edited_at=row.get("editedAt"), deleted_by=row.get("deletedBy"),
            deleted_at=row.get("deletedAt"),
            reactions={emoji: frozenset(users) for emoji, users in row.get("reactions", {}).items()},
            version=row.get("version", 0),  # an item stored before versions has none
        )

    def _room_messages(self, room_id: str) -> list[ChatMessage]:
        return [self._message_of(row) for (room, _), row in sorted(self.messages.items()) if room == room_id]

    # message changes: the conditions of DynamoChatStore's conditional UpdateItems ---------------
    def _changeable(self, room_id: str, message_id: str) -> Row | None:
        row = self.messages.get((room_id, message_id))
        return row if row is not None and "deletedBy" not in row else None

    def _result(self, room_id: str, message_id: str, changed: bool) -> ChangeResult:
        row = self.messages.get((room_id, message_id))
        return ChangeResult(changed, self._message_of(row) if row is not None else None)

    @staticmethod
    def _bump(row: Row, at_ms: int) -> None:
        """`ADD version :one` of DynamoChatStore's change writes (an item without one counts from 0),
        and the change time they SET, which puts the message in the change index."""
        row["version"] = row.get("version", 0) + 1
        row["changedAtMs"] = at_ms

    def edit_message(self, room_id: str, message_id: str, author_id: str, text: str, edited_at: str, *,
                     at_ms: int) -> ChangeResult:
        self._count("edit_message")
        row = self._changeable(room_id, message_id)
        if row is None or row["userId"] != author_id or row["message"] == text:
            return self._result(room_id, message_id, False)
        row.update(message=text, editedAt=edited_at)
        self._bump(row, at_ms)
        return self._result(room_id, message_id, True)

    def delete_message(
        self, room_id: str, message_id: str, deleted_by: str, deleted_at: str, *, author_id: str | None, at_ms: int
    ) -> ChangeResult:
        self._count("delete_message")
        row = self._changeable(room_id, message_id)
        if row is None or (author_id is not None and row["userId"] != author_id):
            return self._result(room_id, message_id, False)
        row.pop("message", None)
        row.pop("editedAt", None)
        row.update(deletedBy=deleted_by, deletedAt=deleted_at, reactions={})
        self._bump(row, at_ms)
        return self._result(room_id, message_id, True)

    def react(self, room_id: str, message_id: str, user_id: str, emoji: str, *, remove: bool, max_distinct: int,
              at_ms: int) -> ChangeResult:
        self._count("react")
        row = self._changeable(room_id, message_id)
        if row is None:
            return self._result(room_id, message_id, False)
        reactions = row.setdefault("reactions", {})
        users = reactions.get(emoji, [])
        if (user_id in users) != remove or (not remove and emoji not in reactions and len(reactions) >= max_distinct):
            return self._result(room_id, message_id, False)
        users = sorted(set(users) - {user_id}) if remove else sorted(set(users) | {user_id})
        if users:
            reactions[emoji] = users
        else:
            del reactions[emoji]  # like DynamoDB: a set left empty is removed
        self._bump(row, at_ms)
        return self._result(room_id, message_id, True)

    # unread counts and the rooms list ------------------------------------------------------
    def open_reader(self, room_id: str, user_id: str) -> str | None:
        self._count("open_reader")
        key = (room_id, read_cursor_key(user_id))
        row = self.memberships.setdefault(key, {"roomId": room_id, "memberKey": key[1]})
        row["readerId"] = user_id
        return row.get("messageId")

    def count_messages_after(self, room_id: str, after: str | None, limit: int) -> int:
        self._count("count_messages_after")
        return min(limit, sum(1 for (room, mid) in self.messages if room == room_id and (after is None or mid > after)))

    def reader_rooms(self, user_id: str, limit: int) -> list[RoomActivity]:
        self._count("reader_rooms")
        cursors = sorted((row["roomId"], row.get("messageId")) for row in self.memberships.values() if row.get("readerId") == user_id)
        rooms = []
        for room_id, cursor in cursors[:limit]:
            self._count("newest_message")  # DynamoChatStore: one Query, newest first, Limit 1, per room
            history = self._room_messages(room_id)
            rooms.append(RoomActivity.of(room_id, cursor, history[-1] if history else None))
        return rooms

    def newest_messages(self, room_id: str, limit: int, before: str | None = None, *, consistent: bool = False) -> HistoryPage:
        self._count("newest_messages")
        older = [m for m in self._room_messages(room_id) if before is None or m.message_id < before]
        return HistoryPage(older[-limit:], has_more=len(older) > limit)

    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage:
        self._count("messages_since")
        newer = [m for m in self._room_messages(room_id) if m.message_id > since]
        return HistoryPage(newer[:limit], has_more=len(newer) > limit)

    def messages_changed_since(self, room_id: str, since: str, limit: int, *, max_read: int) -> HistoryPage:
        """The ByChange index's Queries: the room's changed messages, newest change first (a tie in
        DynamoDB's order, here the messageId's), in pages of at most `limit` + 1 read, each filtered
        to those at or before `since`, until `limit` + 1 kept or `max_read` read (one call a page)."""
        from_ms = ulid_time_ms(since)
        indexed = sorted(((row["changedAtMs"], mid), row) for (room, mid), row in self.messages.items()
                         if room == room_id and row.get("changedAtMs", -1) >= from_ms)
        entries = [row for _, row in reversed(indexed)]
        kept: list[ChatMessage] = []
        read = 0
        while True:
            self._count("messages_changed_since")
            size = min(limit + 1, max_read - read)
            page = entries[read:read + size]
            read += len(page)
            kept += [self._message_of(row) for row in page if row["messageId"] <= since]
            # DynamoDB answers a LastEvaluatedKey after a page that stopped at its Limit, more or not.
            unread = len(page) == size
            if len(kept) > limit or read >= max_read or not unread:
                break
        return HistoryPage(kept[:limit], has_more=len(kept) > limit or (unread and read >= max_read))

    # read cursors --------------------------------------------------------------------------
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        self._count("advance_read_cursor")
        key = (room_id, keys.read_cursor_key(user_id))
        current = self.memberships.get(key)
        if current is not None and current.get("messageId", "") >= message_id:
            return False
        self.memberships[key] = {"roomId": room_id, "memberKey": key[1], "messageId": message_id, "readerId": user_id}
        return True

    # rate limits ---------------------------------------------------------------------------
    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int:
        self._count("count_request")
        key = keys.rate_counter_key(kind, user_id, window)
        row = self.idempotency.get(key)  # like UpdateItem ADD: the window is in the key, TTL only tidies
        total = (row["hits"] if row else 0) + hits
        self.idempotency[key] = {"key": key, "hits": total, "expiresAt": self._expires(keep_seconds)}
        return total

    # inspection ----------------------------------------------------------------------------
    def rows(self) -> dict[str, list[Row]]:
        """Every row, per table of template.yaml, as DynamoDB would hold it (a deep copy)."""
        return copy.deepcopy({
            "MembershipsTable": list(self.memberships.values()) + list(self.presence_rows.values()),
            "MessagesTable": list(self.messages.values()),
            "IdempotencyTable": list(self.idempotency.values()),
        })
