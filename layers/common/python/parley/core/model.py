"""The value types the chat rules work on, independent of how they are stored or delivered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .access import Grants, RoomAccessMode
from .reactions import counts

# Members stored before rooms claims existed were admitted when every room was open.
LEGACY_MEMBER_ACTIONS = "rw"


@dataclass(frozen=True)
class Caller:
    """Who a frame speaks for: always the verified identity from the authorizer, never `data`."""

    connection_id: str
    user_id: str
    name: str
    # What the token lets this connection do, from the authorizer context (no read per request).
    grants: Grants = Grants.for_mode(RoomAccessMode.OPEN)


@dataclass(frozen=True)
class Member:
    """One connection in one room (a user with two tabs is two members)."""

    room_id: str
    connection_id: str
    user_id: str
    name: str
    joined_at: int
    actions: str = LEGACY_MEMBER_ACTIONS  # encoded `access` actions, decided at join from the grants

    @property
    def can_read(self) -> bool:
        return "r" in self.actions


@dataclass(frozen=True)
class ChatMessage:
    room_id: str
    message_id: str
    user_id: str
    name: str
    text: str  # "" once deleted
    timestamp: str
    client_message_id: str | None = None
    edited_at: str | None = None
    deleted_by: str | None = None  # set: a tombstone, the text is gone
    deleted_at: str | None = None
    reactions: Mapping[str, frozenset[str]] = field(default_factory=dict)  # emoji -> users

    @property
    def deleted(self) -> bool:
        return self.deleted_by is not None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "messageId": self.message_id,
            "roomId": self.room_id,
            "userId": self.user_id,
            "name": self.name,
            "timestamp": self.timestamp,
        }
        if self.deleted_by is not None:
            wire.update(deleted=True, deletedBy=self.deleted_by, deletedAt=self.deleted_at)
            return wire
        wire["message"] = self.text
        if self.client_message_id is not None:
            wire["clientMessageId"] = self.client_message_id
        if self.edited_at is not None:
            wire["editedAt"] = self.edited_at
        reaction_counts = counts(self.reactions)
        if reaction_counts:
            wire["reactions"] = reaction_counts
        return wire


@dataclass(frozen=True)
class ChangeResult:
    """A conditional change to one message: `changed`, and the message as it now stands (None: no such message)."""

    changed: bool
    message: ChatMessage | None


@dataclass(frozen=True)
class HistoryPage:
    messages: list[ChatMessage]
    has_more: bool


@dataclass(frozen=True)
class FanoutJob:
    """One encoded frame and its recipients: self-contained, so it can be handed to another worker."""

    payload: bytes
    connection_ids: tuple[str, ...]


@dataclass
class FanoutResult:
    delivered: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    dispatched: int = 0  # recipients handed to fan-out shards (a large room): delivered later, elsewhere

    def merge(self, other: "FanoutResult") -> None:
        self.delivered |= other.delivered
        self.gone |= other.gone
        self.failed.update(other.failed)
        self.dispatched += other.dispatched


@dataclass(frozen=True)
class Participant:
    """A user with at least one connection in a room (listed once however many connections)."""

    user_id: str
    name: str


@dataclass(frozen=True)
class ParticipantsPage:
    participants: list[Participant]
    has_more: bool


@dataclass(frozen=True)
class JoinOutcome:
    joined: bool  # False: the connection was already in the room (nothing written)
    first_for_user: bool  # the user's first connection in the room: the room hears of it
    room_size: int  # participants (users) in the room after the join


@dataclass(frozen=True)
class LeaveOutcome:
    left: bool  # False: the connection was not in the room (nothing written)
    last_for_user: bool  # the user's last connection in the room left: the room hears of it
    room_size: int  # participants (users) in the room after the leave
    name: str = ""  # the user's display name in the room, when known


@dataclass(frozen=True)
class PresenceChange:
    """A user arriving in or leaving a large room, announced in a coalesced `presence_update`."""

    room_id: str
    user_id: str
    name: str
    joined: bool
    at_ms: int


@dataclass(frozen=True)
class ShardJob:
    """One slice of a large room's fan-out, run by one invocation of the fan-out function.

    `delivery_id` (the messageId, or a fresh ULID for other frames) and `shard` name the slice,
    so a retried invocation skips the connections it already claimed. `recipients` pairs each
    connection with its user, for the clean-up of connections found gone.
    """

    room_id: str
    delivery_id: str
    shard: int
    frame: str  # the encoded frame, UTF-8 JSON text
    recipients: tuple[tuple[str, str], ...]

    def to_event(self) -> dict[str, object]:
        return {"roomId": self.room_id, "deliveryId": self.delivery_id, "shard": self.shard, "frame": self.frame,
                "recipients": [list(pair) for pair in self.recipients]}

    @classmethod
    def from_event(cls, event: dict[str, object]) -> "ShardJob":
        recipients = tuple((str(c), str(u)) for c, u in event["recipients"])  # type: ignore[union-attr]
        return cls(str(event["roomId"]), str(event["deliveryId"]), int(event["shard"]), str(event["frame"]), recipients)  # type: ignore[arg-type]
