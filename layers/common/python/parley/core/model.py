"""The value types the chat rules work on, independent of how they are stored or delivered."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """Who a frame speaks for: always the verified identity from the authorizer, never `data`."""

    connection_id: str
    user_id: str
    name: str


@dataclass(frozen=True)
class Member:
    """One connection in one room (a user with two tabs is two members)."""

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
