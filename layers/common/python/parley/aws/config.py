"""Settings read once per execution environment from the variables the template sets."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..core.access import RoomAccessMode
from ..core.protocol import MAX_MESSAGE_BYTES_LIMIT


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError as exc:
        raise RuntimeError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def room_access_mode() -> RoomAccessMode:
    """ROOM_ACCESS (template parameter RoomAccess): what a token without a `rooms` claim may do."""
    raw = os.environ.get("ROOM_ACCESS", "").strip() or RoomAccessMode.OPEN.value
    try:
        return RoomAccessMode(raw)
    except ValueError:
        raise RuntimeError(f"ROOM_ACCESS must be open or token, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    memberships_table: str
    messages_table: str
    idempotency_table: str
    max_message_length: int
    fanout_max_in_flight: int
    connection_ttl_seconds: int
    idempotency_ttl_seconds: int
    chat_rate_limit: int
    signal_rate_limit: int
    rate_window_seconds: int
    chat_rate_batch: int
    signal_rate_batch: int
    join_rate_limit: int
    join_rate_batch: int
    room_access: RoomAccessMode
    presence_threshold: int
    fanout_function_name: str
    fanout_shard_size: int
    fanout_page_size: int

    def __post_init__(self) -> None:
        """A misconfigured deployment fails here, at cold start (the module builds `settings` on import),
        naming the variable and its bound, rather than on each request with an error far from its cause."""
        if not 1 <= self.max_message_length <= MAX_MESSAGE_BYTES_LIMIT:
            raise RuntimeError(
                f"MAX_MESSAGE_LENGTH must be 1..{MAX_MESSAGE_BYTES_LIMIT} bytes so a chat_message frame fits API Gateway's "
                f"32 KB client frame, got {self.max_message_length}"
            )
        for variable, parameter, batch in (("CHAT_RATE_BATCH", "ChatRateBatch", self.chat_rate_batch),
                                           ("SIGNAL_RATE_BATCH", "SignalRateBatch", self.signal_rate_batch),
                                           ("JOIN_RATE_BATCH", "JoinRateBatch", self.join_rate_batch)):
            # Above the allowance is fine: every frame is then counted at once (RateLimits).
            if batch < 1:
                raise RuntimeError(f"{variable} (template parameter {parameter}) must be at least 1, got {batch}")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            memberships_table=os.environ.get("MEMBERSHIPS_TABLE", "parley-memberships"),
            messages_table=os.environ.get("MESSAGES_TABLE", "parley-messages"),
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE", "parley-idempotency"),
            max_message_length=_int("MAX_MESSAGE_LENGTH", 4000),
            fanout_max_in_flight=_int("FANOUT_MAX_IN_FLIGHT", 64),
            # API Gateway ends every connection after 2 hours; the margin covers a late $disconnect.
            connection_ttl_seconds=_int("CONNECTION_TTL_SECONDS", 2 * 3600 + 300),
            idempotency_ttl_seconds=_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600),
            # Per user and window: chat messages, and the cheaper signals (typing, read receipts).
            chat_rate_limit=_int("CHAT_RATE_LIMIT", 30),
            signal_rate_limit=_int("SIGNAL_RATE_LIMIT", 120),
            rate_window_seconds=_int("RATE_WINDOW_SECONDS", 10),
            # An environment counts a user's frames on the shared counter in batches of this many
            # while they are well below the allowance (core.rate_limits.AllowanceLedger); 1: every frame.
            chat_rate_batch=_int("CHAT_RATE_BATCH", 5),
            signal_rate_batch=_int("SIGNAL_RATE_BATCH", 11),
            # Joins and leaves: sized for a reconnect that rejoins many rooms from a few tabs at once.
            join_rate_limit=_int("JOIN_RATE_LIMIT", 100),
            join_rate_batch=_int("JOIN_RATE_BATCH", 10),
            room_access=room_access_mode(),
            # Rooms this large hear arrivals and departures as coalesced presence_update frames.
            presence_threshold=_int("PRESENCE_THRESHOLD", 100),
            # Broadcasts to more connections than FANOUT_SHARD_SIZE go to this function in slices;
            # unset (e.g. a function that never broadcasts to large rooms): never sharded.
            fanout_function_name=os.environ.get("FANOUT_FUNCTION_NAME", ""),
            fanout_shard_size=_int("FANOUT_SHARD_SIZE", 100),
            # A request reads this many of a room's connections itself; the fan-out function reads the rest.
            fanout_page_size=_int("FANOUT_PAGE_SIZE", 1000),
        )


settings = Settings.from_env()
