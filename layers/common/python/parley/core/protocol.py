"""The wire protocol of PROTOCOL.md: client frame validation and server frame construction.

No I/O here. Validation turns an inbound body into a typed request or a `ProtocolError`;
the builders return plain dicts that are encoded once per broadcast, not once per recipient.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, ValidationInfo
from pydantic import StringConstraints, field_validator

from .access import DmRoomIdError, dm_participants
from .reactions import validate_emoji
from .room_list import DEFAULT_ROOMS_PAGE, MAX_ROOMS_PAGE, decode_cursor
from .ids import ROOM_ID_PATTERN, ULID_PATTERN


# API Gateway's limits, in UTF-8 bytes: a frame it sends (route response or @connections post)
# and a frame a client sends (a browser frame over 32 KB closes the connection).
MAX_FRAME_BYTES = 128 * 1024
# A rejoin's `changed` messages take at most this much of its chat_history (see `history_frame`).
CHANGED_FRAME_SHARE = MAX_FRAME_BYTES // 2
MAX_CLIENT_FRAME_BYTES = 32 * 1024
# The most a chat_message frame adds around its text: type, a 64-character roomId and a
# 64-character clientMessageId (each character \u-escaped at worst). MaxMessageLength may not
# exceed what is left, so a valid message always fits in one client frame.
CHAT_FRAME_OVERHEAD_BYTES = 768
MAX_MESSAGE_BYTES_LIMIT = MAX_CLIENT_FRAME_BYTES - CHAT_FRAME_OVERHEAD_BYTES


def _dm_shape(room_id: str) -> str:
    """Any room id starting with `dm:` must be a well-formed direct-message id."""
    try:
        dm_participants(room_id)
    except DmRoomIdError as error:
        raise ValueError(str(error)) from None
    return room_id


def _rooms_cursor(cursor: str) -> str:
    try:
        decode_cursor(cursor)
    except ValueError:
        raise ValueError("must be the nextCursor of an earlier rooms_list") from None
    return cursor


RoomId = Annotated[StrictStr, StringConstraints(pattern=ROOM_ID_PATTERN), AfterValidator(_dm_shape)]
MessageId = Annotated[StrictStr, StringConstraints(pattern=ULID_PATTERN)]
ClientMessageId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
PageLimit = Annotated[int, Field(strict=True, ge=1, le=100)]
RoomsPageLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_ROOMS_PAGE)]
RoomsCursor = Annotated[StrictStr, StringConstraints(min_length=1, max_length=128), AfterValidator(_rooms_cursor)]
# Bounded before the emoji check runs, so a 4 KB string costs nothing to refuse.
Emoji = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64), AfterValidator(validate_emoji)]


class ErrorCode:
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    VALIDATION_ERROR = "validation_error"
    NOT_A_MEMBER = "not_a_member"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    INTERNAL_ERROR = "internal_error"


class ProtocolError(Exception):
    """A request the protocol rejects: it becomes exactly one `error` frame and changes nothing."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        retry_after_ms: int | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_ms = retry_after_ms
        self.context = context  # fields the client acts on, e.g. `roomId` and `action` of a `forbidden`


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type_name: ClassVar[str]


class MessageData(_Data):
    type_name = "message"
    message: Any


class JoinRoomData(_Data):
    type_name = "join_room"
    roomId: RoomId
    since: MessageId | None = None
    limit: PageLimit = 50


class LeaveRoomData(_Data):
    type_name = "leave_room"
    roomId: RoomId


def _chat_text(value: str, info: ValidationInfo) -> str:
    """The limit is in bytes as the text travels (JSON-escaped UTF-8, quotes excluded), the unit
    API Gateway's 32 KB frame limit is in: 4,000 ASCII characters fit a limit of 4000, as do
    2,000 two-byte or 666 escaped control characters."""
    limit = (info.context or {}).get("max_message_length", 4000)
    if not value.strip():
        raise ValueError("must contain at least one non-whitespace character")
    size = json_text_bytes(value)
    if size > limit:
        raise ValueError(f"must be at most {limit} bytes as UTF-8 JSON (got {size}); shorten it or split it in two")
    return value


class ChatMessageData(_Data):
    type_name = "chat_message"
    roomId: RoomId
    message: StrictStr
    clientMessageId: ClientMessageId | None = None

    _length = field_validator("message")(_chat_text)


class _MessageRef(_Data):
    """A request about one stored message of a room."""

    roomId: RoomId
    messageId: MessageId


class EditMessageData(_MessageRef):
    type_name = "edit_message"
    message: StrictStr

    _length = field_validator("message")(_chat_text)


class DeleteMessageData(_MessageRef):
    type_name = "delete_message"


class ReactData(_MessageRef):
    type_name = "react"
    emoji: Emoji
    remove: StrictBool = False


class GetRoomsData(_Data):
    type_name = "get_rooms"
    limit: RoomsPageLimit = DEFAULT_ROOMS_PAGE
    cursor: RoomsCursor | None = None


def json_text_bytes(text: str) -> int:
    """UTF-8 bytes of `text` as a JSON string body (what a client's JSON.stringify sends)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


class TypingData(_Data):
    type_name = "typing"
    roomId: RoomId
    isTyping: StrictBool


class MarkReadData(_Data):
    type_name = "mark_read"
    roomId: RoomId
    messageId: MessageId


class GetHistoryData(_Data):
    type_name = "get_history"
    roomId: RoomId
    before: MessageId | None = None  # older pages
    since: MessageId | None = None  # newer pages: a reconnected client catching up (not with `before`)
    limit: PageLimit = 50


class GetParticipantsData(_Data):
    type_name = "get_participants"
    roomId: RoomId
    cursor: Annotated[StrictStr, StringConstraints(min_length=1, max_length=512)] | None = None
    limit: PageLimit = 100


class PingData(_Data):
    type_name = "ping"


REQUEST_MODELS: dict[str, type[_Data]] = {
    model.type_name: model
    for model in (
        MessageData, JoinRoomData, LeaveRoomData, ChatMessageData, TypingData, MarkReadData, GetHistoryData, PingData,
        EditMessageData, DeleteMessageData, ReactData, GetRoomsData, GetParticipantsData,
    )
}

KNOWN_TYPES = ", ".join(sorted(REQUEST_MODELS))

_FRIENDLY = {
    "string_pattern_mismatch": "has an invalid format",
    "missing": "is required",
}


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    details = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "data"
        message = _FRIENDLY.get(item["type"], item["msg"])
        if item["type"] == "string_pattern_mismatch" and field == "roomId":
            message = "must be 1-64 characters from A-Z a-z 0-9 _ . : -"
        elif item["type"] == "string_pattern_mismatch":
            message = "must be a messageId (a 26-character ULID)"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        details.append({"field": field, "message": message})
    return details


_NOT_AN_OBJECT = "Frames must be JSON objects like {\"type\": \"ping\", \"data\": {}}."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} does not fit a double")
    return value


def parse_envelope(body: str | None) -> dict[str, Any]:
    """The frame as a JSON object; anything else is `invalid_json`.

    Strict JSON only: `NaN`/`Infinity` and numbers that overflow to infinity are refused,
    and so are `\\ud800`-style escapes that decode to lone surrogates, because anything we
    accept may be echoed or stored and must be valid JSON in valid UTF-8 on the way out.
    """
    text = body or ""
    try:
        frame = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_JSON, _NOT_AN_OBJECT) from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, _NOT_AN_OBJECT)
    try:
        if not text.isascii() or "\\" in text:  # else no string in it can hold a lone surrogate
            _check_unicode(frame)
    except (UnicodeEncodeError, RecursionError):
        raise ProtocolError(
            ErrorCode.INVALID_JSON, "Frames must be valid Unicode: a \\u escape may not encode a lone surrogate."
        ) from None
    return frame


def _check_unicode(frame: dict[str, Any]) -> None:
    """Raise UnicodeEncodeError if a string in the frame (a key or a value) is a lone surrogate.

    Only a frame whose text is not ASCII or holds an escape can hold one, and most frames are neither
    (`parse_envelope` asks first). This one is walked, not encoded again whole: an ASCII string cannot
    hold one (and says so in O(1)), so a 30 KB message costs ~1 µs here where re-encoding the frame cost
    ~70 µs, on every frame of every sender. The walk keeps its own stack (objects nest as deep as `json`
    reads them), and a list is encoded in one C call (walking 16,000 numbers in Python took 3x as long).
    benchmarks/frame_parse_bench.py times each kind of frame."""
    pending: list[Any] = [frame]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
            continue
        for key, item in value.items():
            if not key.isascii():
                key.encode("utf-8")
            if isinstance(item, str):
                if not item.isascii():
                    item.encode("utf-8")
            elif isinstance(item, (dict, list)):
                pending.append(item)


def parse_request(type_name: str, frame: dict[str, Any], *, max_message_length: int) -> _Data:
    """Validate `data` for a known type; `data` may be omitted and then means `{}`."""
    data = frame.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(
            ErrorCode.VALIDATION_ERROR,
            f"`data` of a {type_name} frame must be a JSON object.",
            details=[{"field": "data", "message": "must be a JSON object"}],
        )
    try:
        return REQUEST_MODELS[type_name].model_validate(data, context={"max_message_length": max_message_length})
    except ValidationError as exc:
        details = _field_errors(exc)
        fields = ", ".join(d["field"] for d in details)
        raise ProtocolError(ErrorCode.VALIDATION_ERROR, f"Invalid {type_name}: check {fields}.", details=details) from None


def unknown_type(frame: dict[str, Any]) -> ProtocolError:
    """The error for a frame no route matched (API Gateway sent it to `$default`)."""
    raw_type = frame.get("type")
    if raw_type is None:
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"The frame has no `type`: send one of {KNOWN_TYPES}.")
    return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown type {raw_type!r}: send one of {KNOWN_TYPES}.")


def client_message_id_of(frame: dict[str, Any] | None) -> str | None:
    """The `clientMessageId` to echo in an error, when the client sent a usable one."""
    data = (frame or {}).get("data")
    value = data.get("clientMessageId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 1 <= len(value) <= 64 else None


# ---- server frames -------------------------------------------------------------------------


def participants_cursor(room_id: str, after_user: str) -> str:
    """An opaque `nextCursor`: the room and the last participant of the page, base64url JSON.

    Not a secret: it names a position any member can see. `read_participants_cursor` and the
    service check it against the request's room and the room as it stands.
    """
    raw = json.dumps({"r": room_id, "u": after_user}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def bad_cursor(reason: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.VALIDATION_ERROR,
        f"Invalid get_participants: {reason}; send the nextCursor of this room's last participants_list, or no cursor to start over.",
        details=[{"field": "cursor", "message": reason}],
    )


def read_participants_cursor(cursor: str, room_id: str) -> str:
    """The participant a cursor pages on from; `validation_error` for anything this room did not issue."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise bad_cursor("is not a cursor the server issued") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("u"), str) or not isinstance(decoded.get("r"), str):
        raise bad_cursor("is not a cursor the server issued")
    if decoded["r"] != room_id:
        raise bad_cursor("belongs to another room")
    return decoded["u"]


def frame(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_name, "data": data}


# One encoder for every server frame: json.dumps with options builds a new one per call (~1 µs a frame).
_WIRE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_text(frame_: dict[str, Any]) -> str:
    """The wire form of a server frame as text: a route response's `body`."""
    return _WIRE_ENCODER.encode(frame_)


def encode(frame_: dict[str, Any]) -> bytes:
    """The wire form of a server frame (route responses and posts alike); its length is what API
    Gateway holds against `MAX_FRAME_BYTES`."""
    return _WIRE_ENCODER.encode(frame_).encode("utf-8")


def history_frame(
    room_id: str, messages: list[dict[str, Any]], has_more: bool, *, keep_newest: bool, extra: dict[str, Any] | None = None,
    changed: list[dict[str, Any]] | None = None, changed_more: bool = False,
) -> dict[str, Any]:
    """`chat_history` with as many of `messages` (oldest first) as fit in `MAX_FRAME_BYTES`.

    A page that does not fit loses messages from the end a client pages on from, and says
    `hasMore`: the oldest when `keep_newest` (newest/`before` pages: the client asks `before` the
    first it got), else the newest (`since` pages: the client asks `since` the last it got).

    A rejoin's page also carries `changed` (older messages changed since, newest change first) and
    `moreChanged`. They are fitted first, into at most `CHANGED_FRAME_SHARE`, losing their oldest
    changes: a change left out costs the client a re-read of every older page it holds, a message
    left out only the next catch-up page. The share leaves room for a message of any allowed length.
    """
    data: dict[str, Any] = {"roomId": room_id, "messages": [], "hasMore": False, **(extra or {})}
    if changed is not None:
        kept_changes, _ = _fitting(changed, CHANGED_FRAME_SHARE)
        data.update(changed=kept_changes, moreChanged=changed_more or len(kept_changes) < len(changed))
    used = len(encode(frame("chat_history", data)))
    kept, _ = _fitting(list(reversed(messages)) if keep_newest else messages, MAX_FRAME_BYTES - used)
    trimmed = len(kept) < len(messages)
    if keep_newest:
        kept.reverse()
    return frame("chat_history", {**data, "messages": kept, "hasMore": has_more or trimmed})


def _fitting(items: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The leading `items` whose JSON, comma-separated, takes at most `budget` bytes, and the bytes taken."""
    kept: list[dict[str, Any]] = []
    used = 0
    for item in items:
        size = len(encode(item)) + (1 if kept else 0)  # the comma between two items
        if used + size > budget:
            break
        used += size
        kept.append(item)
    return kept, used


def error_frame(
    error: ProtocolError, *, request_type: str | None = None, client_message_id: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"code": error.code, "message": error.message}
    if request_type is not None:
        data["requestType"] = request_type
    if client_message_id is not None:
        data["clientMessageId"] = client_message_id
    if error.details:
        data["details"] = error.details
    if error.retry_after_ms is not None:
        data["retryAfterMs"] = error.retry_after_ms
    if error.context:
        data.update(error.context)
    return frame("error", data)
