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

    def merge(self, other: "FanoutResult") -> None:
        self.delivered |= other.delivered
        self.gone |= other.gone
        self.failed.update(other.failed)
