"""What the chat rules need from the outside world, as Protocols the adapters implement.

`ChatService` receives one of each; the DynamoDB store, the `@connections` sender and Powertools
are the production adapters, `parley_testing` holds the in-memory ones.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from .model import ChangeResult, ChatMessage, FanoutJob, FanoutResult, HistoryPage, Member
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

    def add_connection(self, connection_id: str, user_id: str, name: str, connected_at_ms: int) -> None: ...
    def remove_connection(self, connection_id: str) -> None: ...
    def room_members(self, room_id: str) -> list[Member]: ...
    def is_member(self, room_id: str, connection_id: str) -> bool: ...
    def add_member(self, member: Member) -> None: ...
    def remove_member(self, room_id: str, connection_id: str) -> bool:
        """Delete the membership; False when there was none (nothing deleted)."""
        ...

    def rooms_of(self, connection_id: str) -> list[str]:
        """The connection's rooms; may lag behind writes (an eventually consistent index)."""
        ...

    def remove_memberships(self, connection_id: str, room_ids: list[str]) -> None: ...
    def put_message(self, message: ChatMessage, *, only_if_new: bool = False) -> bool:
        """Store a message; with `only_if_new`, False (and nothing written) when it is already stored."""
        ...

    def claim_client_message_id(self, message: ChatMessage) -> ChatMessage | None:
        """Record `message` as the one for its clientMessageId; return the earlier one if there is one."""
        ...

    def newest_messages(self, room_id: str, limit: int, before: str | None = None) -> HistoryPage: ...
    def messages_since(self, room_id: str, since: str, limit: int) -> HistoryPage: ...
    def advance_read_cursor(self, room_id: str, user_id: str, message_id: str) -> bool:
        """Move the cursor forward only; False when it already stood at or past `message_id`."""
        ...

    def count_request(self, kind: str, user_id: str, window: int, keep_seconds: int, hits: int = 1) -> int:
        """Add `hits` to the user's counter for (`kind`, `window`); the total so far, these included."""
        ...

    # message changes: one conditional write each; a refused one returns the message as it stood
    def edit_message(self, room_id: str, message_id: str, author_id: str, text: str, edited_at: str) -> ChangeResult:
        """Replace the text if the message exists, is not deleted, is `author_id`'s and says something else."""
        ...

    def delete_message(
        self, room_id: str, message_id: str, deleted_by: str, deleted_at: str, *, author_id: str | None
    ) -> ChangeResult:
        """Make the message a tombstone unless it is missing or deleted (or, with `author_id`, someone else's)."""
        ...

    def react(self, room_id: str, message_id: str, user_id: str, emoji: str, *, remove: bool, max_distinct: int) -> ChangeResult:
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

    def record_activity(self, message: ChatMessage, preview: dict[str, Any], *, newest_only: bool) -> bool:
        """Make `message` the room's last message: when it is newer (`newest_only`), else when it already is."""
        ...

    def reader_rooms(self, user_id: str, limit: int) -> list[RoomActivity]:
        """Up to `limit` rooms the user joined or read: read cursor, last message id and preview."""
        ...


class Sender(Protocol):
    """Delivery to connections: `send` reports who got it, who is gone, who failed after retries."""

    def send(self, job: FanoutJob) -> FanoutResult: ...
    def close(self, connection_id: str) -> bool: ...
