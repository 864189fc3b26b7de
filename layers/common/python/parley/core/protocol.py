"""The wire protocol of PROTOCOL.md: client frame validation and server frame construction.

No I/O here. Validation turns an inbound body into a typed request or a `ProtocolError`;
the builders return plain dicts that are encoded once per broadcast, not once per recipient.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, ValidationInfo
from pydantic import StringConstraints, field_validator

from .access import DmRoomIdError, dm_participants
from .reactions import validate_emoji
from .room_list import DEFAULT_ROOMS_PAGE, MAX_ROOMS_PAGE, decode_cursor
from .ids import ULID_PATTERN

ROOM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


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
    limit = (info.context or {}).get("max_message_length", 4000)
    if not value.strip():
        raise ValueError("must contain at least one non-whitespace character")
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters (got {len(value)})")
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
    before: MessageId | None = None
    limit: PageLimit = 50


class PingData(_Data):
    type_name = "ping"


REQUEST_MODELS: dict[str, type[_Data]] = {
    model.type_name: model
    for model in (
        MessageData, JoinRoomData, LeaveRoomData, ChatMessageData, TypingData, MarkReadData, GetHistoryData, PingData,
        EditMessageData, DeleteMessageData, ReactData, GetRoomsData,
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
    try:
        frame = json.loads(body or "", parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_JSON, _NOT_AN_OBJECT) from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, _NOT_AN_OBJECT)
    try:
        json.dumps(frame, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise ProtocolError(
            ErrorCode.INVALID_JSON, "Frames must be valid Unicode: a \\u escape may not encode a lone surrogate."
        ) from None
    return frame


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


def frame(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_name, "data": data}


def encode(frame_: dict[str, Any]) -> bytes:
    return json.dumps(frame_, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
