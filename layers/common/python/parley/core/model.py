"""The value types the chat rules work on, independent of how they are stored or delivered."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .access import Grants, RoomAccessMode
from .ids import ROOM_ID_PATTERN, ULID_PATTERN
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
    # Counts the writes to the message: 1 as first stored, +1 per edit, deletion or reaction change
    # (in the write itself). A client keeps the copy with the higher one, so a history page read
    # before a change it already heard live cannot undo it. Items stored before versions read as 0.
    version: int = 1

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
            "version": self.version,
        }
        # A tombstone keeps it too: the sender's client acknowledges a retried message by it, deleted or not.
        if self.client_message_id is not None:
            wire["clientMessageId"] = self.client_message_id
        if self.deleted_by is not None:
            wire.update(deleted=True, deletedBy=self.deleted_by, deletedAt=self.deleted_at)
            return wire
        wire["message"] = self.text
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
class MembersPage:
    """Up to one page of a room's connections, in connection-id order (the memberships' key order)."""

    members: list[Member]
    more: bool  # the room has connections after the last one listed

    @property
    def next_after(self) -> str | None:
        """Where the next page starts (after this connection id); None when this was the last page."""
        return self.members[-1].connection_id if self.more and self.members else None


@dataclass(frozen=True)
class RequestCharge:
    """Requests counted against a user's allowance: `hits` (this one and any an environment accepted
    before without counting) added to the rate counter of (`kind`, `window`)."""

    kind: str
    user_id: str
    window: int
    keep_seconds: int
    hits: int = 1


@dataclass(frozen=True)
class PagePlan:
    """How one page of a large room's remaining connections was cut into shards, recorded once per
    (delivery, page start) so that every attempt of a continuation cuts that page the same way.

    `bounds` holds the last connection id of each shard: shard `first_shard + i` is the room's
    connections after `bounds[i - 1]` (or the page start) up to `bounds[i]`, whoever they are at the
    time it is read. `more`: the room went on after `bounds[-1]` when the page was planned.
    """

    first_shard: int
    bounds: tuple[str, ...]
    more: bool

    @property
    def next_shard(self) -> int:
        return self.first_shard + len(self.bounds)


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
    room_size: int  # participants (users) in the room after the leave; 0 unless last_for_user (not read)
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


# A connection id as API Gateway (and `parley dev`) mints them; a continuation's cursor must be one.
CONNECTION_ID_RE = re.compile(r"^[A-Za-z0-9+/=_-]{1,128}$")
_ROOM_ID_RE = re.compile(ROOM_ID_PATTERN)
_DELIVERY_ID_RE = re.compile(ULID_PATTERN)
MAX_SHARDS = 1_000_000


class BadFanoutEvent(ValueError):
    """An event the fan-out function cannot have been sent by Parley: refused, never acted on."""


@dataclass(frozen=True)
class RoomContinuation:
    """The rest of a large room's broadcast: read the room after `after` and dispatch its shards.

    The handler that accepted the frame reads one page of the room, dispatches that page's shards
    (numbered from 0) and hands this to ONE asynchronous invocation of the fan-out function, whose
    shards are numbered from `first_shard`. It is built by the server only (no field comes from a
    client), and `from_event` still validates every field, so a malformed or foreign event can only
    fail, never read another room's partition or post anything.
    """

    room_id: str
    delivery_id: str
    frame: str  # the encoded frame, UTF-8 JSON text
    after: str  # the connection id the page read by the handler ended with
    first_shard: int
    exclude: str | None = None  # a connection the frame is not for (the typist's own)

    def to_event(self) -> dict[str, object]:
        event: dict[str, object] = {"continueAfter": self.after, "roomId": self.room_id, "deliveryId": self.delivery_id,
                                    "firstShard": self.first_shard, "frame": self.frame}
        if self.exclude is not None:
            event["exclude"] = self.exclude
        return event

    @classmethod
    def from_event(cls, event: Mapping[str, object]) -> "RoomContinuation":
        room, delivery, after = event.get("roomId"), event.get("deliveryId"), event.get("continueAfter")
        first, frame, exclude = event.get("firstShard"), event.get("frame"), event.get("exclude")
        if not (isinstance(room, str) and _ROOM_ID_RE.match(room)):
            raise BadFanoutEvent("roomId is not a room id")
        if not (isinstance(delivery, str) and _DELIVERY_ID_RE.match(delivery)):
            raise BadFanoutEvent("deliveryId is not a ULID")
        if not (isinstance(after, str) and CONNECTION_ID_RE.match(after)):
            raise BadFanoutEvent("continueAfter is not a connection id")
        if exclude is not None and not (isinstance(exclude, str) and CONNECTION_ID_RE.match(exclude)):
            raise BadFanoutEvent("exclude is not a connection id")
        if not (type(first) is int and 0 <= first < MAX_SHARDS):
            raise BadFanoutEvent("firstShard is not a shard number")
        if not (isinstance(frame, str) and _is_a_frame(frame)):
            raise BadFanoutEvent("frame is not an encoded frame (a JSON object with a string type)")
        return cls(room, delivery, frame, after, first, exclude)


FanoutWork = ShardJob | RoomContinuation


def _is_a_frame(text: str) -> bool:
    """Whether `text` is what the server posts: a JSON object whose `type` is a string."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return False
    return isinstance(decoded, dict) and isinstance(decoded.get("type"), str)


def fanout_work_of_event(event: object) -> FanoutWork:
    """The fan-out function's event as the work it names: a continuation, or one shard."""
    if not isinstance(event, Mapping):
        raise BadFanoutEvent(f"the event is a {type(event).__name__}, not an object")
    if "continueAfter" in event:
        return RoomContinuation.from_event(event)
    try:
        job = ShardJob.from_event(dict(event))
    except (KeyError, TypeError, ValueError) as error:
        raise BadFanoutEvent(f"not a shard: {error!r}") from None
    if not _is_a_frame(job.frame):
        raise BadFanoutEvent("frame is not an encoded frame (a JSON object with a string type)")
    return job
