"""What the chat rules need from the outside world, as Protocols the adapters implement.

`ChatService` receives one of each; the DynamoDB store, the `@connections` sender and Powertools
are the production adapters, `parley_testing` holds the in-memory ones.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from .model import (
    ChangeResult, ChatMessage, FanoutJob, FanoutResult, FanoutWork, HistoryPage, JoinOutcome, LeaveOutcome, Member,
    MembersPage, PagePlan, ParticipantsPage, PresenceChange, RequestCharge,
)
from .room_list import RoomActivity

# Epoch milliseconds now; a fake clock in tests makes rate windows and timestamps deterministic.
Clock = Callable[[], int]
# Adds one metric data point (name, count).
MetricSink = Callable[[str, float], None]


class Logger(Protocol):
    """The subset of `logging.Logger` (and Powertools' Logger) the rules use."""

    def info(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = ...) -> None: ...
    def warning(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = ...) -> None: ...
    def exception(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = ...) -> None: ...


class ChatStore(Protocol):
    """Storage, one operation per DynamoDB call (or one paginated Query), so cost reads off the rules."""

    def room_members_page(self, room_id: str, *, after: str | None, limit: int | None, upto: str | None = None,
                          consistent: bool = False) -> MembersPage:
        """The room's connections in connection-id order: after `after` (from the start when None),
        at most `limit` of them (all when None), and none after `upto` when given. One Query (paged
        at 1 MB), so a broadcast reads a large room a page at a time. `consistent`: a strongly
        consistent read, for a change's audience (it must hold every join that finished before the
        change was written); else eventual, at half the read units."""
        ...

    def first_page_and_count(self, room_id: str, limit: int, charge: RequestCharge) -> tuple[MembersPage, int]:
        """`room_members_page(room_id, after=None, limit=limit)` and `count_request` of `charge.hits`,
        as two calls sent together (DynamoDB: side by side, so a room action waits for one round
        trip, not two); returns the page and the counter's new total."""
        ...

    def plan_fanout_page(self, delivery_id: str, after: str, plan: PagePlan) -> PagePlan:
        """Record how the page after `after` is cut into shards, unless an earlier attempt already
        did; returns the plan that holds (one conditional write, answered with the old plan)."""
        ...

    def membership_and_count(self, room_id: str, connection_id: str, charge: RequestCharge) -> tuple[bool, int]:
        """`is_member` and `count_request` of `charge.hits`, sent together as `first_page_and_count`'s."""
        ...

    def is_member(self, room_id: str, connection_id: str) -> bool:
        """Strongly consistent: a connection whose join has been answered is a member."""
        ...

    def join_room(self, member: Member) -> JoinOutcome:
        """Add the connection to the room and count its user in; never reads the whole room."""
        ...

    def leave_room(self, room_id: str, connection_id: str, user_id: str | None) -> LeaveOutcome:
        """Remove the connection from the room and count its user out when it was their last
        (`user_id` None: the user is read from the membership)."""
        ...

    def room_size(self, room_id: str) -> int: ...
    def participants(self, room_id: str, *, after_user: str | None, limit: int) -> ParticipantsPage:
        """Up to `limit` participants in userId order, after `after_user` when given."""
        ...

    def has_participant(self, room_id: str, user_id: str) -> bool: ...
    def add_presence_change(self, change: PresenceChange) -> None:
        """Record an arrival or departure for the presence function (which reads them as a stream)."""
        ...

    def claim_deliveries(self, delivery_id: str, shard: int, connection_ids: list[str]) -> list[str]:
        """Mark these connections as being sent `delivery_id`; returns those no earlier attempt of
        the shard claimed (so a retried shard never posts twice to one connection)."""
        ...

    def rooms_of(self, connection_id: str) -> list[str]:
        """The connection's rooms; may lag behind writes (an eventually consistent index)."""
        ...

    def members_among(self, room_id: str, connection_ids: Sequence[str]) -> set[str]:
        """Which of `connection_ids` are in the room now: one strongly consistent Query of the room's
        connection keys from the lowest of them to the highest (a shard's recipients are such a range)."""
        ...

    def put_message(self, message: ChatMessage) -> bool:
        """Store a new message (its `version` as given: 1 for a new one); False, and nothing written,
        when one with its id is stored already. Never an overwrite: two attempts of one
        clientMessageId store the same message, and the later put must not undo the changes (edits,
        reactions, a deletion) made to the copy the earlier one stored."""
        ...

    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None:
        """Record `message` as the one for its clientMessageId; return the earlier one if there is one."""
        ...

    def move_claim(self, claimed: ChatMessage, to: ChatMessage) -> ChatMessage | None:
        """Point `claimed`'s clientMessageId at `to` (its id and timestamp), only while it still points
        at `claimed`: None when moved, else the message it points at now."""
        ...

    def stored_message(self, room_id: str, message_id: str) -> ChatMessage | None:
        """The message as the room's history holds it now (strongly consistent), or None."""
        ...

    def newest_messages(self, room_id: str, limit: int, before: str | None = None, *, consistent: bool = False) -> HistoryPage:
        """`consistent` for a join's page, which must hold every change whose audience was read before
        the join's membership was written; `get_history` reads eventually."""
        ...

    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage:
        """A join's page and the catch-up pages after it (`get_history` with `since`): always strongly
        consistent (see `newest_messages`), as the client pages on from the join's."""
        ...

    def messages_changed_since(self, room_id: str, since: str, limit: int, *, max_read: int) -> HistoryPage:
        """A rejoin's older messages changed while the client was away: those at or before `since`
        whose last change (edit, deletion, reaction) was made at or after `since`'s millisecond, as
        they stand now (tombstones too), newest change first, at most `limit`. Eventually consistent
        Queries of the room's changed messages (an index only they are in), newest change first, each
        reading at most `limit` + 1 of them whatever their messageId and keeping those at or before
        `since` (the rejoin's pages hold the others as they stand), until `limit` + 1 are kept or
        `max_read` were read. `has_more`: more such messages exist (`limit` + 1 kept), or may (the
        budget ran out with changes left unread); never for changes only to messages after `since`."""
        ...

    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        """Move the cursor forward only; False when it already stood at or past `message_id`."""
        ...

    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int:
        """Add `hits` to the user's counter for (`kind`, `window`); the total so far, these included."""
        ...

    # message changes: one conditional write each, which also adds 1 to the message's `version` (an
    # item without one counts from 0) and stamps the change's time (`at_ms`, epoch ms) on it for
    # `messages_changed_since`; a refused one writes nothing and returns the message as it stood
    def edit_message(self, room_id: str, message_id: str, author_id: str, text: str, edited_at: str, *,
                     at_ms: int) -> ChangeResult:
        """Replace the text if the message exists, is not deleted, is `author_id`'s and says something else."""
        ...

    def delete_message(
        self, room_id: str, message_id: str, deleted_by: str, deleted_at: str, *, author_id: str | None, at_ms: int
    ) -> ChangeResult:
        """Make the message a tombstone unless it is missing or deleted (or, with `author_id`, someone else's)."""
        ...

    def react(self, room_id: str, message_id: str, user_id: str, emoji: str, *, remove: bool, max_distinct: int,
              at_ms: int) -> ChangeResult:
        """Add or remove one user's emoji; unchanged when the message is missing or deleted, the
        reaction is already (or not) there, or a new emoji would exceed `max_distinct`."""
        ...

    # unread counts and the rooms list
    def open_reader(self, room_id: str, user_id: str) -> str | None:
        """List the room among the user's rooms; returns their read cursor (None: nothing read yet)."""
        ...

    def count_messages_after(self, room_id: str, after: str | None, limit: int) -> int:
        """Messages newer than `after` (all when None), counted up to `limit`."""
        ...

    def reader_rooms(self, user_id: str, limit: int) -> list[RoomActivity]:
        """Up to `limit` rooms the user joined or read, each with its read cursor and its newest
        message as it stands now (`RoomActivity.of`): one read of history per room, none written per message."""
        ...


class Sender(Protocol):
    """Delivery to connections: `send` reports who got it, who is gone, who failed after retries."""

    def send(self, job: FanoutJob) -> FanoutResult: ...
    def close(self, connection_id: str) -> bool: ...


class ShardDispatcher(Protocol):
    """Hands large-room fan-out work to parallel invocations (asynchronously): slices of the
    room (`ShardJob`) and, for a room beyond one page, the reading of the rest (`RoomContinuation`)."""

    def dispatch(self, jobs: Sequence[FanoutWork]) -> list[FanoutWork]:
        """Queue the jobs; returns those that could not be queued (the caller runs them itself)."""
        ...
