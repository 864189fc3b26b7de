"""The chat rules of PROTOCOL.md, written once against the ports in `ports`.

Each public method serves one client type and returns the frame for the caller (sent as the
route response, which costs no `@connections` call) or None. Everything else a request causes
is a broadcast through the sender. Connections found gone while broadcasting are cleaned up
before the request ends, because `$disconnect` is best effort.
"""

from __future__ import annotations

import json
import logging
import time
from bisect import bisect_left
from dataclasses import replace
from typing import Any, Callable, Iterable, TypeVar

from . import protocol as p
from .ids import iso_at, new_ulid, ulid_time_ms
from .model import (
    Caller, ChangeResult, ChatMessage, FanoutJob, FanoutResult, FanoutWork, HistoryPage, LeaveOutcome, Member, MembersPage, PagePlan,
    ParticipantsPage, PresenceChange, RequestCharge, RoomContinuation, ShardJob,
)
from .ports import ChatStore, Clock, Logger, MetricSink, Sender, ShardDispatcher
from .protocol import ErrorCode, ProtocolError
from .rate_limits import ABUSE_FACTOR, AllowanceLedger, OverLimitMemory, RateLimits
from .access import Action, RoomAccessMode, allowed_actions, encode_actions
from .reactions import MAX_DISTINCT_EMOJI
from .room_list import MAX_LISTED_ROOMS, UNREAD_CAP, newest_first_page, unread_fields, unread_from_page

Frame = dict[str, Any]
T = TypeVar("T")
# A connection a post found gone: (connection id, its user, the room the post was for, if any).
GoneConnection = tuple[str, str | None, str | None]

# Clean-up triggered by one request is bounded; TTL removes whatever is left.
MAX_GONE_PER_REQUEST = 200
# A broadcast that finds at least this many connections of one room gone reads which are still
# members (one Query) rather than trying a conditional delete for each (see `_still_listed`).
GONE_READ_FROM = 4
# A read cursor may not point this far into the future (ULIDs carry their mint time).
READ_CURSOR_CLOCK_SKEW_MS = 60_000
# A claimed clientMessageId whose message is older than this and not stored belongs to an attempt
# that died: no attempt outlives the functions' Timeout (28 s) or API Gateway's 29 s.
ABANDONED_CLAIM_MS = 30_000
DEFAULT_ROUTE = "$default"
# participants_list and get_participants pages hold at most this many participants.
PARTICIPANTS_PAGE = 100
# Rooms of at least this many participants hear arrivals and departures as coalesced presence_update.
DEFAULT_PRESENCE_THRESHOLD = 100
# A presence_update lists at most this many users per direction (the frame stays far below 128 KB).
PRESENCE_LIST_MAX = 50
# A broadcast to more connections than this is split into shards for parallel fan-out invocations.
DEFAULT_FANOUT_SHARD_SIZE = 100
# A shard claims its connections this many at a time before posting to them.
SHARD_CLAIM_CHUNK = 64
# A request reads at most this many of a room's connections itself; a broadcast to a larger room
# hands the reading of the rest to one continuation invocation of the fan-out function.
DEFAULT_FANOUT_PAGE_SIZE = 1000
# What `rate_limited` says the user sent too many of, per allowance.
_ALLOWANCE_NAMES = {"chat": "messages and edits", "joins": "room joins and leaves",
                    "signals": "typing, read, reaction, history, participant and room list requests"}
# A rejoin's chat_history brings at most this many older messages changed while the client was
# away (`changed`); with more, `moreChanged` tells it to read its older pages again.
REJOIN_CHANGES = 100
# ...reading at most this many entries of the change index to find them: changes to messages after
# `since` (reactions to what was said while the client was away) are read and passed over, and past
# this many `moreChanged` says there may be more. Four Queries of at most 101 eventually consistent
# items: at most the read units of re-reading two held pages of 100 strongly consistently, which is
# what `moreChanged` would cost a client holding 200 messages (and sends them all to it again); and
# four round trips of milliseconds, far inside API Gateway's 29 s.
REJOIN_CHANGE_READS = 4 * (REJOIN_CHANGES + 1)


def _no_metrics(name: str, value: float) -> None:
    return None


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        sender: Sender,
        *,
        max_message_length: int = 4000,
        rate_limits: RateLimits | None = None,
        over_limit: OverLimitMemory | None = None,
        ledger: AllowanceLedger | None = None,
        metric: MetricSink = _no_metrics,
        logger: Logger | None = None,
        now_ms: Clock = _wall_clock_ms,
        presence_threshold: int = DEFAULT_PRESENCE_THRESHOLD,
        shards: ShardDispatcher | None = None,
        fanout_shard_size: int = DEFAULT_FANOUT_SHARD_SIZE,
        fanout_page_size: int = DEFAULT_FANOUT_PAGE_SIZE,
    ) -> None:
        self._store = store
        self._sender = sender
        self.max_message_length = max_message_length
        self._metric = metric
        self._limits = rate_limits or RateLimits()
        self._over_limit = over_limit if over_limit is not None else OverLimitMemory()
        if ledger is None and max(self._limits.chat_batch, self._limits.signals_batch, self._limits.joins_batch) > 1:
            # A ledger made per request would forget every frame it did not count: no limit at all.
            raise ValueError("counter batches above 1 need the execution environment's AllowanceLedger")
        self._ledger = ledger if ledger is not None else AllowanceLedger()
        self._now_ms = now_ms
        self.presence_threshold = presence_threshold
        self._shards = shards
        self.fanout_shard_size = max(1, fanout_shard_size)
        self.fanout_page_size = max(1, fanout_page_size)
        self._logger: Logger = logger if logger is not None else logging.getLogger(__name__)
        self._gone: list[GoneConnection] = []
        self._forgotten: set[str] = set()

    # ---- entry points ----------------------------------------------------------------------
    def handle_frame(self, route_key: str, body: str | None, caller: Caller, *, request_id: str) -> Frame | None:
        """Serve one WebSocket frame API Gateway routed to `route_key`: the reply, an error frame or None.

        Never raises: bad input becomes one `error` frame, and an unexpected failure becomes
        `internal_error` quoting `request_id` (logged with its stack trace, never sent).
        """
        frame: dict[str, Any] | None = None
        request_type = None if route_key == DEFAULT_ROUTE else route_key
        try:
            frame = p.parse_envelope(body)
            if route_key == DEFAULT_ROUTE:
                raw_type = frame.get("type")
                request_type = raw_type if isinstance(raw_type, str) else None
                raise p.unknown_type(frame)
            return self.handle(route_key, frame, caller)
        except ProtocolError as error:
            self._logger.info("request rejected", extra={"code": error.code, "details": error.details})
            return p.error_frame(error, request_type=request_type, client_message_id=p.client_message_id_of(frame))
        except Exception:
            self._logger.exception("request failed")
            error = ProtocolError(
                ErrorCode.INTERNAL_ERROR,
                f"Something went wrong on our side; try again. Quote request id {request_id} when reporting it.",
            )
            return p.error_frame(error, request_type=request_type, client_message_id=p.client_message_id_of(frame))

    def handle(self, type_name: str, frame: dict[str, Any], caller: Caller) -> Frame | None:
        """Validate and serve one client frame of a known type."""
        request = p.parse_request(type_name, frame, max_message_length=self.max_message_length)
        try:
            return getattr(self, f"_on_{type_name}")(request, caller)
        finally:
            self._drain_gone()

    def disconnect(self, connection_id: str, user_id: str | None) -> None:
        """Remove the connection everywhere and tell each room it was the user's last connection in.

        `user_id` None: the event did not say who it was (no authorizer context); the clean-up
        still runs, only the departure announcements are skipped.
        """
        self._forgotten.add(connection_id)
        try:
            self._forget_connection(connection_id, user_id, left=None)
        finally:
            self._drain_gone()

    def announce_presence(self, changes: list[PresenceChange]) -> None:
        """Tell each large room who arrived and who left since its last `presence_update`, in one frame.

        `changes` are what join and leave recorded for rooms at or above the presence threshold,
        in any order, possibly more than once each (a stream retries): a user who came and went
        (or went and came back) within the batch is not mentioned; otherwise their latest change
        counts. At most `PRESENCE_LIST_MAX` users are listed per direction; `joinedCount` and
        `leftCount` give the totals, and `count` the room's size now.
        """
        by_room: dict[str, dict[str, list[PresenceChange]]] = {}
        for change in sorted(changes, key=lambda c: c.at_ms):
            by_room.setdefault(change.room_id, {}).setdefault(change.user_id, []).append(change)
        try:
            for room, users in sorted(by_room.items()):
                joined, left = [], []
                for history in users.values():
                    first, last = history[0], history[-1]
                    if first.joined != last.joined:
                        continue  # came and went, or went and came back: no net change
                    (joined if last.joined else left).append({"userId": last.user_id, "name": last.name})
                if not joined and not left:
                    continue
                update = {
                    "roomId": room,
                    "joined": joined[:PRESENCE_LIST_MAX],
                    "left": left[:PRESENCE_LIST_MAX],
                    "joinedCount": len(joined),
                    "leftCount": len(left),
                    "count": self._store.room_size(room),
                }
                self._broadcast(self._read_room(room), p.frame("presence_update", update), room)
                self._metric("PresenceUpdates", 1)
        finally:
            self._drain_gone()

    # ---- client types ----------------------------------------------------------------------
    def _on_message(self, request: p.MessageData, caller: Caller) -> Frame:
        return p.frame("message_response", {"status": "received", "message": request.message, "timestamp": self._timestamp()})

    def _on_ping(self, request: p.PingData, caller: Caller) -> Frame:
        return p.frame("pong", {"timestamp": self._timestamp()})

    def _on_join_room(self, request: p.JoinRoomData, caller: Caller) -> Frame:
        room = request.roomId
        actions = self._check_access(caller, room, Action.READ)
        self._spend("joins", caller)
        me = Member(room, caller.connection_id, caller.user_id, caller.name, self._now_ms(), encode_actions(actions))
        outcome = self._store.join_room(me)
        if outcome.first_for_user:
            if outcome.room_size < self.presence_threshold:
                joined = {"roomId": room, "userId": caller.user_id, "name": caller.name, "timestamp": self._timestamp()}
                self._broadcast(self._read_room(room), p.frame("user_joined", joined), room, exclude=caller.connection_id)
            else:
                self._store.add_presence_change(PresenceChange(room, caller.user_id, caller.name, True, self._now_ms()))
        participants = self._store.participants(room, after_user=None, limit=PARTICIPANTS_PAGE)
        self._send_to_caller(caller, _participants_frame(room, participants, outcome.room_size))
        if not request.since:
            page = self._store.newest_messages(room, request.limit, consistent=True)
            complete_from = "" if not page.has_more else page.messages[0].message_id
            unread = self._unread_on_join(room, caller, page, complete_from)
            return p.history_frame(room, [m.to_wire() for m in page.messages], page.has_more, keep_newest=True, extra=unread)
        page = self._store.messages_since(room, request.since, request.limit)
        # A rejoin: its pages hold the messages after `since` as they stand, but not an edit, deletion
        # or reaction made meanwhile to one the client holds from before; those come along (one Query in a
        # room with at most 101 changes since, at most four otherwise).
        changed = self._store.messages_changed_since(room, request.since, REJOIN_CHANGES, max_read=REJOIN_CHANGE_READS)
        unread = self._unread_on_join(room, caller, page, None if page.has_more else request.since)
        # A `since` page says which `since` it answers, as get_history's do: the client pages on from it.
        return p.history_frame(room, [m.to_wire() for m in page.messages], page.has_more, keep_newest=False,
                               extra={**unread, "since": request.since}, changed=[m.to_wire() for m in changed.messages],
                               changed_more=changed.has_more)

    def _unread_on_join(self, room: str, caller: Caller, page: HistoryPage, complete_from: str | None) -> dict[str, Any]:
        """List the room among the user's rooms and count what they have not read.

        The reader UpdateItem returns the read cursor; when it points inside the history page the
        join already read, the count costs nothing more, else one COUNT Query of at most 101 items.
        """
        cursor = self._store.open_reader(room, caller.user_id)
        counted = unread_from_page([m.message_id for m in page.messages], cursor, complete_from=complete_from)
        if counted is None:
            counted = self._store.count_messages_after(room, cursor, UNREAD_CAP + 1)
        return unread_fields(counted)

    def _on_leave_room(self, request: p.LeaveRoomData, caller: Caller) -> None:
        # Counted even when the connection is not in the room: the conditional delete is a write either
        # way. Never refused: a refused leave left the user in the room (announced to no one, frames
        # still arriving) unless the client sent it again, and a join/leave loop is bounded by its
        # refused joins anyway; counted, so that a loop of leaves still meets the flood close.
        self._spend("joins", caller, refuse=False)
        self._leave(request.roomId, caller.connection_id, caller.user_id)
        return None

    def _on_get_participants(self, request: p.GetParticipantsData, caller: Caller) -> Frame:
        room = request.roomId
        after = p.read_participants_cursor(request.cursor, room) if request.cursor else None
        self._admit_member("signals", room, caller)
        if after is not None and not self._store.has_participant(room, after):
            raise p.bad_cursor("is stale: the participant it pages on from has left; start over without a cursor")
        page = self._store.participants(room, after_user=after, limit=request.limit)
        return _participants_frame(room, page, self._store.room_size(room))

    def _on_chat_message(self, request: p.ChatMessageData, caller: Caller) -> Frame:
        room = request.roomId
        self._check_access(caller, room, Action.WRITE)
        self._admit_change("chat", room, caller)
        now = self._now_ms()
        message = ChatMessage(
            room, new_ulid(now), caller.user_id, caller.name, request.message, iso_at(now), request.clientMessageId
        )
        original = self._store.claim_client_message_id(message) if message.client_message_id else None
        stored: ChatMessage | None = None  # the original as the history holds it, when that was read already
        if original is not None and now - ulid_time_ms(original.message_id) > ABANDONED_CLAIM_MS:
            original, message, stored = self._reclaim(original, message)
        # The message the claim stands for: this attempt's own (it claimed the id, or moved a dead
        # attempt's claim to it), else the one an earlier attempt claimed. Every attempt that finds
        # the claim stores that same message, so the put is conditional for each of them: another
        # attempt may have stored it a moment earlier and the room reacted to it since, and its
        # version, reactions or deletion must never be written over. The put that finds it there
        # answers as a duplicate. (A fresh id makes the condition free on the common path: the same
        # PutItem, the same write unit.)
        claimed = original or message
        if stored is None and self._store.put_message(claimed):
            # Stored now, by this attempt: a new message, or the original of an attempt that died
            # between its claim and its put, which the room has not heard yet either.
            message = claimed
        else:
            # A duplicate: nothing new is stored. The first attempt may have died between its put
            # and its fan-out (its members Query failed, the invocation timed out), and this one
            # cannot tell, so the room is told again: the same messageId, which clients drop when
            # they already have it (a large room's shard claims skip those already sent to).
            self._metric("DuplicateMessages", 1)
            # As the history holds it now, not as first sent: edited, reacted to or deleted since, a
            # client that lacks it must not get the first text back (nor a deleted one's).
            current = stored or self._store.stored_message(room, claimed.message_id) or claimed
            echo = p.frame("message_received", current.to_wire())
            self._broadcast(self._audience(room), echo, room, delivery_id=claimed.message_id, exclude=caller.connection_id)
            return echo
        page = self._audience(room)
        self._metric("MessagesStored", 1)
        result = self._broadcast(page, p.frame("message_received", message.to_wire()), room, delivery_id=message.message_id)
        if result.dispatched:
            # A large room: the shards deliver it after this reply; say to how many it is going. Beyond
            # one page this invocation never reads the whole room: the size counter says (users, not tabs).
            recipients = (max(0, self._store.room_size(room) - 1) if page.more
                          else len({m.connection_id for m in page.members} - {caller.connection_id}))
            return p.frame("chat_update", {"roomId": room, "messageId": message.message_id, "status": "sent", "recipients": recipients})
        delivered_to = len(result.delivered - {caller.connection_id})
        reply = {"roomId": room, "messageId": message.message_id, "status": "delivered", "deliveredTo": delivered_to}
        return p.frame("chat_update", reply)

    def _reclaim(self, original: ChatMessage, retry: ChatMessage) -> tuple[ChatMessage | None, ChatMessage, ChatMessage | None]:
        """A retry of a message whose first attempt claimed its clientMessageId long ago. When that
        attempt died before storing it, this one moves the claim to the original text under the id
        and timestamp minted now, and returns (None, that message, None) to be stored as new; else
        (the message the claim stands for, `retry`, the message as stored when it is: a duplicate,
        with no put to try and no second read).

        Why a new id: a message stored now under an id minted long ago would sort behind what the
        room has seen since, where a client's rejoin (`since` 30 s before the newest it saw) never
        looks. Within ABANDONED_CLAIM_MS the first attempt may still be running, so the original id
        and its conditional put stay (`_on_chat_message`)."""
        stored = self._store.stored_message(original.room_id, original.message_id)
        if stored is not None:
            return original, retry, stored
        fresh = replace(original, message_id=retry.message_id, timestamp=retry.timestamp)
        return self._store.move_claim(original, fresh), fresh, None

    def _on_typing(self, request: p.TypingData, caller: Caller) -> None:
        self._check_access(caller, request.roomId, Action.WRITE)
        page = self._admit("signals", request.roomId, caller)
        update = {"roomId": request.roomId, "userId": caller.user_id, "isTyping": request.isTyping}
        self._broadcast(page, p.frame("typing_update", update), request.roomId, exclude=caller.connection_id)
        return None

    def _on_mark_read(self, request: p.MarkReadData, caller: Caller) -> None:
        if ulid_time_ms(request.messageId) > self._now_ms() + READ_CURSOR_CLOCK_SKEW_MS:
            raise ProtocolError(
                ErrorCode.VALIDATION_ERROR,
                "Invalid mark_read: messageId is from the future; send the messageId of a message you received.",
                details=[{"field": "messageId", "message": "must not be later than the newest message"}],
            )
        self._check_access(caller, request.roomId, Action.WRITE)
        page = self._admit("signals", request.roomId, caller)
        if self._store.advance_read_cursor(request.roomId, caller.user_id, request.messageId):
            update = {"roomId": request.roomId, "messageId": request.messageId, "status": "read", "userId": caller.user_id}
            self._broadcast(page, p.frame("chat_update", update), request.roomId, exclude=caller.connection_id)
        return None

    def _on_get_history(self, request: p.GetHistoryData, caller: Caller) -> Frame:
        """Older pages (`before`, or the newest), or newer ones (`since`): a client back from a reconnect
        pages on from its rejoin's `chat_history` with these, a Query each, where another join would also
        write the membership and read the participants again."""
        if request.before and request.since:
            raise ProtocolError(
                ErrorCode.VALIDATION_ERROR,
                "Invalid get_history: send before (older messages) or since (newer ones), not both.",
                details=[{"field": "since", "message": "not allowed together with before"}],
            )
        self._check_access(caller, request.roomId, Action.READ)
        self._admit_member("signals", request.roomId, caller)
        if request.since:
            page = self._store.messages_since(request.roomId, request.since, request.limit)
        else:
            page = self._store.newest_messages(request.roomId, request.limit, before=request.before)
        extra = {"since": request.since} if request.since else None
        wire = [m.to_wire() for m in page.messages]
        return p.history_frame(request.roomId, wire, page.has_more, keep_newest=not request.since, extra=extra)

    def _on_edit_message(self, request: p.EditMessageData, caller: Caller) -> None:
        room, message_id = request.roomId, request.messageId
        self._check_access(caller, room, Action.WRITE)
        self._admit_change("chat", room, caller)
        now = self._now_ms()
        result = self._store.edit_message(room, message_id, caller.user_id, request.message, iso_at(now), at_ms=now)
        current = self._existing(result, room, message_id)
        if not result.changed and current.user_id != caller.user_id:
            raise _forbidden(room, Action.WRITE, "only its author can edit a message")
        # The same text again (a retry) changes nothing but tells the room again: the first attempt
        # may have died after its write and before its fan-out (`_admit_change`).
        self._broadcast(self._audience(room), p.frame("message_updated", _updated(current)), room)
        return None

    def _on_delete_message(self, request: p.DeleteMessageData, caller: Caller) -> None:
        room, message_id = request.roomId, request.messageId
        actions = allowed_actions(caller.grants, caller.user_id, room)
        if not actions & {Action.WRITE, Action.MODERATE}:
            raise _forbidden(room, Action.WRITE, "deleting a message needs write (your own) or moderate (anyone's)")
        self._admit_change("chat", room, caller)
        author_only = None if Action.MODERATE in actions else caller.user_id
        now = self._now_ms()
        result = self._store.delete_message(room, message_id, caller.user_id, iso_at(now), author_id=author_only, at_ms=now)
        gone = result.message
        if gone is not None and gone.deleted and not result.changed and (author_only is None or gone.user_id == caller.user_id):
            # Deleted already (a retry): tell the room again, as for a message's or an edit's retry.
            self._broadcast(self._audience(room), p.frame("message_deleted", _deleted(gone)), room)
            return None
        tombstone = self._existing(result, room, message_id)
        if not result.changed:
            raise _forbidden(room, Action.MODERATE, "deleting another user's message needs moderate")
        self._broadcast(self._audience(room), p.frame("message_deleted", _deleted(tombstone)), room)
        return None

    def _on_react(self, request: p.ReactData, caller: Caller) -> None:
        room, message_id = request.roomId, request.messageId
        self._check_access(caller, room, Action.WRITE)
        self._admit_change("signals", room, caller)
        result = self._store.react(
            room, message_id, caller.user_id, request.emoji, remove=request.remove, max_distinct=MAX_DISTINCT_EMOJI,
            at_ms=self._now_ms(),
        )
        current = self._existing(result, room, message_id)
        update = p.frame("reaction_update", {
            "roomId": room, "messageId": message_id, "userId": caller.user_id, "emoji": request.emoji,
            "action": "removed" if request.remove else "added", "counts": current.to_wire().get("reactions", {}),
            "version": current.version,
        })
        if not result.changed:
            reacted = caller.user_id in current.reactions.get(request.emoji, frozenset())
            if reacted == request.remove:
                raise ProtocolError(
                    ErrorCode.VALIDATION_ERROR,
                    f"Message {message_id} already has {MAX_DISTINCT_EMOJI} different reactions: react with one of those.",
                    details=[{"field": "emoji", "message": f"at most {MAX_DISTINCT_EMOJI} different emoji per message"}],
                )
            # Already so (a retry): the room is told again, as for an edit's retry.
        self._broadcast(self._audience(room), update, room)
        return None

    def _on_get_rooms(self, request: p.GetRoomsData, caller: Caller) -> Frame:
        """The caller's rooms, newest activity first: one index Query, one newest-message Query per
        room (so a message writes nothing for this list), and one COUNT Query per listed room that
        has unread messages."""
        self._spend("signals", caller)
        readable = [
            room for room in self._store.reader_rooms(caller.user_id, MAX_LISTED_ROOMS)
            if Action.READ in allowed_actions(caller.grants, caller.user_id, room.room_id)
        ]
        page, next_cursor = newest_first_page(readable, request.limit, request.cursor)
        listed = []
        for room in page:
            caught_up = room.last_message_id is None or (room.read_cursor or "") >= room.last_message_id
            counted = 0 if caught_up else self._store.count_messages_after(room.room_id, room.read_cursor, UNREAD_CAP + 1)
            listed.append({"roomId": room.room_id, **unread_fields(counted), "lastMessage": room.last_message})
        return p.frame("rooms_list", {"rooms": listed, "nextCursor": next_cursor})

    # ---- helpers ---------------------------------------------------------------------------
    def _timestamp(self) -> str:
        return iso_at(self._now_ms())

    def _admit_change(self, kind: str, room: str, caller: Caller) -> None:
        """The rate and membership checks of a frame that changes the room's history (a message, an
        edit, a deletion, a reaction), whose audience is read only once the change is written
        (`_audience`), unlike `_admit`'s.

        Why: a join writes its membership and then reads the history. Were the audience read before
        the change was written, a join landing between the two would find neither: it reads the
        history before the change, and the change's fan-out list from before the join. The
        membership check is then a GetItem of the caller's own membership (sent with the rate
        counter's write when there is one), the price of never losing a message to a joiner.
        """
        self._admit_member(kind, room, caller)

    def _admit_member(self, kind: str, room: str, caller: Caller) -> None:
        """The allowance and a GetItem of the caller's own membership (sent with the rate counter's
        write when there is one): a change's check, and a read's that needs no fan-out list
        (`get_history`, `get_participants`)."""
        member = self._charged(kind, caller, lambda: self._store.is_member(room, caller.connection_id),
                               lambda charge: self._store.membership_and_count(room, caller.connection_id, charge))
        if not member:
            raise _not_a_member(room)

    def _audience(self, room: str) -> MembersPage:
        """Who hears a change to the history: the room's first page, read after the change is
        written, so every join that finished before it is here and every later one reads the
        change in its history (`_admit_change`)."""
        return self._read_room(room, consistent=True)

    def _admit(self, kind: str, room: str, caller: Caller) -> MembersPage:
        """The rate and membership checks of a signal that stores nothing in the history (typing, a
        read receipt); the room's first page is both the membership check and the fan-out list.

        Every frame that reaches them is charged to the user's allowance, a `not_a_member` one
        included: that costs the member nothing, and makes a flood of frames to a room the user is
        not in as limited (and as cheap to refuse) as any other. When the environment's ledger asks
        for a counter write, the members Query and the UpdateItem go out together (one round trip
        of waiting, not two); most frames need no write (`AllowanceLedger`).
        Over the allowance, `rate_limited` comes first; then `not_a_member`.
        """
        page = self._charged(kind, caller, lambda: self._read_room(room),
                             lambda charge: self._store.first_page_and_count(room, self.fanout_page_size, charge))
        self._require_member(room, caller, page)
        return page

    def _charged(self, kind: str, caller: Caller, read: Callable[[], T],
                 read_and_count: Callable[[RequestCharge], tuple[T, int]]) -> T:
        """The allowance around a room action's first read: refused at once when this environment
        already saw the user over; else `read`, or, when the ledger asks for a counter write,
        `read_and_count` (the read and the UpdateItem sent together) and refused when over."""
        limit = self._limits.limit_of(kind)
        self._refuse_if_known_over(kind, limit, caller)
        charge = self._charge(kind, caller)
        if charge is None:
            return read()
        result, hits = read_and_count(charge)
        self._refuse_if_over(charge, hits, limit, caller)
        return result

    def _check_access(self, caller: Caller, room: str, action: Action) -> frozenset[Action]:
        """Refuse an action the token does not grant, from the grants alone: no I/O, before anything else."""
        actions = allowed_actions(caller.grants, caller.user_id, room)
        if action not in actions:
            raise _forbidden(room, action)
        return actions

    def _existing(self, result: ChangeResult, room: str, message_id: str) -> ChatMessage:
        """The message a change was made to (or refused on); an error when there is none to change."""
        if result.message is None:
            raise ProtocolError(
                ErrorCode.VALIDATION_ERROR,
                f"There is no message {message_id} in room {room!r}: use a messageId from this room's history.",
                details=[{"field": "messageId", "message": "no such message in this room"}],
            )
        if result.message.deleted and not result.changed:
            raise ProtocolError(
                ErrorCode.VALIDATION_ERROR,
                f"Message {message_id} is deleted: it can no longer be changed.",
                details=[{"field": "messageId", "message": "the message is deleted"}],
            )
        return result.message

    def _require_member(self, room: str, caller: Caller, page: MembersPage) -> None:
        """The room's first page is the membership check, so it costs nothing extra, except in a
        room beyond one page whose first page does not hold the caller: one GetItem more."""
        if any(m.connection_id == caller.connection_id for m in page.members):
            return
        if not (page.more and self._store.is_member(room, caller.connection_id)):
            raise _not_a_member(room)

    def _read_room(self, room: str, *, consistent: bool = False) -> MembersPage:
        """The room's first page: the whole room up to `fanout_page_size` connections. Eventually
        consistent (half the read units) unless it is a change's audience (`_audience`)."""
        return self._store.room_members_page(room, after=None, limit=self.fanout_page_size, consistent=consistent)

    def _refuse_if_known_over(self, kind: str, limit: int, caller: Caller, *, refuse: bool = True) -> bool:
        """Refuse a user this environment already saw over the allowance, before any other I/O
        (with `refuse` False, count the frame as one over the allowance and say so: True).

        Such a frame costs no membership Query, and only every `limit`-th one a counter write
        (which adds the refusals remembered so far), so a flood stays cheap for everyone else.
        This is why `rate_limited` can come before `not_a_member` for a user who is over.
        """
        now = self._now_ms()
        window = self._limits.window_at(now)
        refusals = self._over_limit.refuse(kind, caller.user_id, window)
        if refusals is None:
            return False
        if refusals >= limit:
            hits = self._store.count_request(kind, caller.user_id, window, self._limits.counter_lifetime_seconds, hits=refusals)
            self._over_limit.counted(kind, caller.user_id, refusals)
            self._ledger.counted(kind, caller.user_id, window, hits)
            self._close_if_flooding(hits, limit, caller)
        if refuse:
            raise self._rate_limited(kind, limit, self._limits.retry_after_ms(now))
        return True

    def _spend(self, kind: str, caller: Caller, *, refuse: bool = True) -> None:
        """Charge the user's allowance before anything else is read or written: get_rooms has no room
        read to send the counter write with, and a join or leave must not write the membership of a
        frame that turns out to be over the allowance, so the counter goes first (on the frames the
        ledger asks it for: one in `joins_batch`). With `refuse` False (a leave) a frame over the
        allowance is counted as any other, toward the flood close too, and then performed."""
        limit = self._limits.limit_of(kind)
        if self._refuse_if_known_over(kind, limit, caller, refuse=refuse):
            return
        charge = self._charge(kind, caller)
        if charge is None:
            return
        hits = self._store.count_request(charge.kind, charge.user_id, charge.window, charge.keep_seconds, hits=charge.hits)
        self._refuse_if_over(charge, hits, limit, caller, refuse=refuse)

    def _charge(self, kind: str, caller: Caller) -> RequestCharge | None:
        """This frame against the environment's ledger: None when it is accepted without a counter
        write, else the write to make (this frame and the ones accepted before it, unflushed)."""
        window = self._limits.window_at(self._now_ms())
        hits = self._ledger.take(kind, caller.user_id, window, self._limits.limit_of(kind), self._limits.batch_of(kind))
        if hits == 0:
            return None
        return RequestCharge(kind, caller.user_id, window, self._limits.counter_lifetime_seconds, hits)

    def _refuse_if_over(self, charge: RequestCharge, hits: int, limit: int, caller: Caller, *, refuse: bool = True) -> None:
        """After a counter write: past the allowance, remember the user and refuse the frame (unless
        not `refuse`: remembered all the same, so the user's next frames are counted from memory)."""
        self._ledger.counted(charge.kind, charge.user_id, charge.window, hits)
        if hits <= limit:
            return
        kind, now = charge.kind, self._now_ms()
        self._over_limit.remember(kind, caller.user_id, charge.window)
        self._close_if_flooding(hits, limit, caller)
        if refuse:
            raise self._rate_limited(kind, limit, self._limits.retry_after_ms(now))

    def _close_if_flooding(self, hits: int, limit: int, caller: Caller) -> None:
        """A connection that keeps sending at `ABUSE_FACTOR` times the allowance is closed."""
        if hits > limit * ABUSE_FACTOR:
            self._metric("ConnectionsClosedForAbuse", 1)
            self._sender.close(caller.connection_id)

    def _rate_limited(self, kind: str, limit: int, retry_after: int) -> ProtocolError:
        self._metric("RateLimited", 1)
        what = _ALLOWANCE_NAMES[kind]
        return ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"Too many {what}: "
            f"at most {limit} per {self._limits.window_seconds} s. Retry in {retry_after} ms.",
            retry_after_ms=retry_after,
        )

    def _send_to_caller(self, caller: Caller, frame: Frame) -> None:
        self._broadcast([Member("", caller.connection_id, caller.user_id, caller.name, 0)], frame, None)

    def _broadcast(
        self, room_read: MembersPage | Iterable[Member], frame: Frame, room: str | None, *, exclude: str | None = None,
        delivery_id: str | None = None,
    ) -> FanoutResult:
        """Send `frame` to the members read (a room's first page, or a list), and to the rest of a
        room beyond one page: through shards and one continuation when a dispatcher is wired, else
        by reading the rest here (the old way: a whole room in one invocation)."""
        page = room_read if isinstance(room_read, MembersPage) else MembersPage(list(room_read), more=False)
        after = page.next_after
        members = page.members
        if after is not None and (self._shards is None or room is None):
            members = members + self._store.room_members_page(room or "", after=after, limit=None, consistent=True).members
            after = None
        targets = _targets(members, exclude)
        if after is not None:
            assert room is not None
            self._metric("FanoutPagedRooms", 1)
            return self._dispatch_paged(targets, frame, room, delivery_id or new_ulid(self._now_ms()), after, exclude)
        if not targets:
            return FanoutResult()
        self._metric("FanoutSize", len(targets))
        if self._shards is not None and room is not None and len(targets) > self.fanout_shard_size:
            delivery = delivery_id or new_ulid(self._now_ms())
            return self._dispatch(self._cut(room, delivery, p.encode(frame).decode("utf-8"), targets, 0), len(targets))
        return self._record(self._sender.send(FanoutJob(p.encode(frame), tuple(targets))), targets, frame, room)

    def _cut(self, room: str, delivery_id: str, encoded: str, targets: dict[str, str], first_shard: int) -> list[ShardJob]:
        """Slices of `fanout_shard_size` recipients in connection-id order, numbered from `first_shard`."""
        pairs, size = sorted(targets.items()), self.fanout_shard_size
        return [ShardJob(room, delivery_id, first_shard + n, encoded, tuple(pairs[start:start + size]))
                for n, start in enumerate(range(0, len(pairs), size))]

    def _dispatch_paged(self, targets: dict[str, str], frame: Frame, room: str, delivery_id: str, after: str,
                        exclude: str | None) -> FanoutResult:
        """A room beyond one page: this page's shards, and the rest handed to one continuation
        (queued first: it has the longer way to go)."""
        encoded = p.encode(frame).decode("utf-8")
        jobs = self._cut(room, delivery_id, encoded, targets, 0)
        continuation = RoomContinuation(room, delivery_id, encoded, after, len(jobs), exclude)
        return self._dispatch([continuation, *jobs], len(targets))

    def _dispatch(self, work: list[ShardJob] | list[FanoutWork], recipients: int) -> FanoutResult:
        """Queue fan-out work on the dispatcher; run here what it would not take (all of it without one)."""
        refused = self._shards.dispatch(work) if self._shards is not None else list(work)
        shards = [job for job in work if isinstance(job, ShardJob)]
        self._metric("FanoutShards", len(shards))
        result = FanoutResult(dispatched=recipients)
        if refused:
            # Lambda would not take them (throttled, or no fan-out function where this runs):
            # run that work here, through the same claims and plans, rather than not at all.
            self._metric("ShardDispatchFailures", len(refused))
            self._logger.warning("fan-out work not queued; running it in this invocation",
                                 extra={"room": work[0].room_id if work else None,
                                        "shards": [job.shard for job in refused if isinstance(job, ShardJob)],
                                        "continuation": any(isinstance(job, RoomContinuation) for job in refused)})
            for job in refused:
                result.merge(self._deliver_claimed(job) if isinstance(job, ShardJob) else self._continue(job))
        return result

    def run_fanout(self, work: FanoutWork) -> FanoutResult:
        """The fan-out function's work: one slice of a large room, or the reading of the rest of one.

        A slice's connections are claimed (one conditional write per chunk) before they are posted
        to, so a retry of a shard that died half way posts only to the ones never claimed: no one
        gets the frame twice. The price of a crash is live delivery to at most one chunk, which has
        the message in history (rejoin with `since`).
        """
        try:
            return self._deliver_claimed(work) if isinstance(work, ShardJob) else self._continue(work)
        finally:
            self._drain_gone()

    def _continue(self, job: RoomContinuation) -> FanoutResult:
        """Read the room after `job.after` a page at a time and dispatch each page's shards.

        Each page's cut into shards is recorded before its shards are dispatched (`PagePlan`, one
        conditional write per page), and a later attempt of the same continuation (Lambda retries
        a failed one twice, and may run an event twice) cuts that page by the recorded bounds,
        whatever it reads now. So shard n always covers the same range of connection ids, and its
        claims (per delivery and shard) keep a connection that was in the room throughout from
        getting the frame twice, even when members joined or left between attempts; nobody present
        throughout is skipped, because the pages' ranges follow on from one another up to the end.
        A retry re-dispatches the recorded pages' shards, whose claims then post nothing new.
        """
        after, shard, total = job.after, job.first_shard, FanoutResult()
        size = self.fanout_shard_size
        while True:
            page = self._store.room_members_page(job.room_id, after=after, limit=self.fanout_page_size, consistent=True)
            if not page.members:
                return total
            ids = [m.connection_id for m in page.members]
            ours = PagePlan(shard, tuple(ids[min(start + size, len(ids)) - 1] for start in range(0, len(ids), size)), page.more)
            plan = self._store.plan_fanout_page(job.delivery_id, after, ours)
            members = page.members
            if plan != ours:  # an earlier attempt cut this page: read exactly its range again
                members = self._store.room_members_page(job.room_id, after=after, limit=None, upto=plan.bounds[-1],
                                                        consistent=True).members
            total.merge(self._dispatch(_cut_by(plan, job, members), 0))
            if not plan.more:
                return total
            after, shard = plan.bounds[-1], plan.next_shard

    def _deliver_claimed(self, job: ShardJob) -> FanoutResult:
        targets = dict(job.recipients)
        frame_type = json.loads(job.frame).get("type", "?")
        total = FanoutResult()
        ids = [cid for cid, _ in job.recipients]
        for start in range(0, len(ids), SHARD_CLAIM_CHUNK):
            fresh = self._store.claim_deliveries(job.delivery_id, job.shard, ids[start:start + SHARD_CLAIM_CHUNK])
            if fresh:
                result = self._sender.send(FanoutJob(job.frame.encode("utf-8"), tuple(fresh)))
                total.merge(self._record(result, targets, {"type": frame_type}, job.room_id))
        return total

    def _record(self, result: FanoutResult, targets: dict[str, str], frame: Frame, room: str | None) -> FanoutResult:
        """Queue the gone connections for clean-up, and count and log what failed."""
        if result.gone:
            self._metric("GoneConnections", len(result.gone))
            self._gone.extend((cid, targets[cid], room) for cid in result.gone)
        if result.failed:
            self._metric("DeliveryFailures", len(result.failed))
            self._logger.warning(
                "delivery failed after retries",
                extra={"frame_type": frame["type"], "room": room, "failed": result.failed},
            )
        return result

    def _drain_gone(self) -> None:
        handled = 0
        while self._gone and handled < MAX_GONE_PER_REQUEST:
            for connection_id, user_id, room in self._still_listed(self._take_gone(MAX_GONE_PER_REQUEST - handled)):
                handled += 1
                self._forget_gone(connection_id, user_id, room)

    def _take_gone(self, most: int) -> list[GoneConnection]:
        """Up to `most` queued gone connections not yet seen by this invocation (each is cleaned up once)."""
        taken: list[GoneConnection] = []
        while self._gone and len(taken) < most:
            entry = self._gone.pop(0)
            if entry[0] not in self._forgotten:
                self._forgotten.add(entry[0])
                taken.append(entry)
        return taken

    def _still_listed(self, gone: list[GoneConnection]) -> list[GoneConnection]:
        """Leave out the gone connections already out of the room the post was for (their `$disconnect`,
        or another clean-up, removed them: see `_forget_gone`). When one room has at least
        `GONE_READ_FROM` of them, as a shard does when many members left at once, one read of the
        room's range of them replaces a failed conditional delete each."""
        by_room: dict[str, list[str]] = {}
        for connection_id, _, room in gone:
            if room is not None:
                by_room.setdefault(room, []).append(connection_id)
        listed = {room: set(self._store.members_among(room, ids)) for room, ids in by_room.items() if len(ids) >= GONE_READ_FROM}
        kept = [entry for entry in gone if entry[2] not in listed or entry[0] in listed[entry[2]]]
        if len(kept) < len(gone):
            self._metric("GoneAlreadyCleanedUp", len(gone) - len(kept))
        return kept

    def _forget_gone(self, connection_id: str, user_id: str | None, room: str | None) -> None:
        """A post answered 410: the socket is closed, and its `$disconnect` may already have run,
        may be about to (a room's members leaving at once: their presence updates reach the
        ones not yet cleaned up) or may never come (AWS runs it best effort).

        The room the post was for is left first: when its membership was already gone, whoever
        removed it (that `$disconnect`, another fan-out's clean-up, or the client's own
        leave_room) does or did the rest, so this costs one failed conditional delete (or its share
        of one read, `_still_listed`) instead of a second whole clean-up. Only the one that removes it goes on to the connection's other
        rooms, so a missed `$disconnect` still leaves no member behind anywhere."""
        if room is not None and not self._leave(room, connection_id, user_id).left:
            return
        self._forget_connection(connection_id, user_id, left=room)

    def _forget_connection(self, connection_id: str, user_id: str | None, left: str | None) -> None:
        """Leave every room the index lists for the connection (but `left`, just left)."""
        for room in sorted(set(self._store.rooms_of(connection_id)) - {left}):
            self._leave(room, connection_id, user_id)

    def _leave(self, room: str, connection_id: str, user_id: str | None) -> LeaveOutcome:
        """Take the connection out of the room; the room hears of it when it was the user's last
        (unless who it was is unknown: a `$disconnect` without the authorizer's context)."""
        outcome = self._store.leave_room(room, connection_id, user_id)
        if user_id is None or not outcome.last_for_user:
            return outcome
        if outcome.room_size + 1 < self.presence_threshold:  # the room as it was, with the user in it
            left = {"roomId": room, "userId": user_id, "timestamp": self._timestamp()}
            self._broadcast(self._read_room(room), p.frame("user_left", left), room)
        else:
            self._store.add_presence_change(PresenceChange(room, user_id, outcome.name or user_id, False, self._now_ms()))
        return outcome


def _targets(members: Iterable[Member], exclude: str | None) -> dict[str, str]:
    """Who a room's frame goes to: connection -> user. A member that may not read the room gets
    none of its frames (presence, typing, receipts and reactions included); join never admits one,
    so this guards only against old rows."""
    return {m.connection_id: m.user_id for m in members if m.connection_id != exclude and m.can_read}


def _cut_by(plan: PagePlan, job: RoomContinuation, members: list[Member]) -> list[ShardJob]:
    """The page's shards as `plan` bounds them: shard `first_shard + i` holds the members after
    `bounds[i - 1]` up to `bounds[i]` (empty slices are not sent; their numbers stay taken)."""
    slices: list[list[tuple[str, str]]] = [[] for _ in plan.bounds]
    for connection_id, user_id in sorted(_targets(members, job.exclude).items()):
        at = bisect_left(plan.bounds, connection_id)
        if at < len(slices):
            slices[at].append((connection_id, user_id))
    return [ShardJob(job.room_id, job.delivery_id, plan.first_shard + n, job.frame, tuple(pairs))
            for n, pairs in enumerate(slices) if pairs]


def _not_a_member(room: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_A_MEMBER, f"You are not in room {room!r}: send join_room first.")


def _forbidden(room: str, action: Action, why: str | None = None) -> ProtocolError:
    reason = why or f"your token does not grant {action.value} in this room"
    return ProtocolError(
        ErrorCode.FORBIDDEN,
        f"Not allowed in room {room!r}: {reason}. Ask for a token that grants it.",
        context={"roomId": room, "action": action.value},
    )


def _updated(message: ChatMessage) -> dict[str, Any]:
    """`message_updated` for the message as stored (`version` after the edit, or now on a retry)."""
    return {"roomId": message.room_id, "messageId": message.message_id, "message": message.text, "editedAt": message.edited_at,
            "version": message.version}


def _deleted(tombstone: ChatMessage) -> dict[str, Any]:
    """`message_deleted` for the tombstone as stored: the first deleter, and its version."""
    return {"roomId": tombstone.room_id, "messageId": tombstone.message_id, "deletedBy": tombstone.deleted_by,
            "version": tombstone.version}


def _participants_frame(room: str, page: ParticipantsPage, count: int) -> Frame:
    data: dict[str, Any] = {
        "roomId": room,
        "participants": [{"userId": x.user_id, "name": x.name} for x in page.participants],
        "count": count,
    }
    if page.has_more and page.participants:
        data["nextCursor"] = p.participants_cursor(room, page.participants[-1].user_id)
    return p.frame("participants_list", data)
