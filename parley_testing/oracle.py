"""The property-test oracle: from a raw frame and the tables as they stand, what PROTOCOL.md says
must happen (the replies to the sender and to the other member of the room, and the table
changes), or exactly one `error` frame with its code and fields and no table change at all (a
`rate_limited` or a room action's `not_a_member` rejection may count the request in its `rate#`
counter, nothing else; once a user is over, that count arrives in batches and `rate_limited` comes
before `not_a_member`).

It reads tables, not a model, so it judges any `ChatWorld` (in memory or the real handlers on
moto) the same way. `seed_room` sets up the world every property starts from.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import event

from .chat_world import ROUTES

ROOM_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # fullmatch: `$` must not let "lobby\n" through
ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MAX_TEXT = 4000
CHAT_LIMIT, SIGNAL_LIMIT = 20, 40  # per window; the window is made longer than the test run
# Joins and leaves: high enough that a run's rejoins (`rejoin_lobby_if_left`, the gateway's
# `ensure_in_lobby`, which waits for the join's answer) are never refused; judged all the same.
JOIN_LIMIT = 1000
NOW_MS = int(time.time() * 1000)
ERROR_CODES = {"invalid_json", "unknown_type", "validation_error", "not_a_member", "rate_limited", "internal_error"}

# ---- the world the frames are sent into ----------------------------------------------------


def seed_room(world: Any, chat_limit: int = CHAT_LIMIT, signal_limit: int = SIGNAL_LIMIT,
              join_limit: int = JOIN_LIMIT) -> tuple[Any, Any]:
    """alice (the sender) in `lobby` and `side`, bob in `lobby`, a few messages in `lobby`; the
    rate window is made longer than the run, and the limits high enough that the run never
    reaches the flood close (10x) but low enough that it crosses the allowance."""
    world.use_limits(chat=chat_limit, signals=signal_limit, window_seconds=10**9, joins=join_limit)
    world.oracle_limits = (chat_limit, signal_limit, join_limit)
    alice, bob = world.connect("alice"), world.connect("bob")
    for client, rooms in ((alice, ["lobby", "side"]), (bob, ["lobby"])):
        for room_id in rooms:
            client.send("join_room", {"roomId": room_id})
    for n in range(3):
        alice.send("chat_message", {"roomId": "lobby", "message": f"seed {n}"})
    world.collect()
    alice.take(), bob.take()
    return alice, bob


def rejoin_lobby_if_left(world: Any, alice: Any, bob: Any) -> None:
    if alice.connection_id not in State(world.snapshot(), "", "").members("lobby"):  # a leave_room took it out
        alice.send("join_room", {"roomId": "lobby"})
        world.collect(), alice.take(), bob.take()


# ---- the oracle ----------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:  # no recursion: the frames may be nested as deep as the parser allows
        item = stack.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(char) <= 0xDFFF for char in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def strict_json(text: str) -> tuple[bool, Any]:
    """RFC 8259 JSON (no NaN/Infinity) that decodes to valid Unicode (a `\\ud800` escape alone
    is a lone surrogate, which no UTF-8 output can carry); nesting deeper than the parser goes
    is not accepted."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return False, None
    return (False, None) if _has_lone_surrogate(value) else (True, value)


def ulid_ms(value: str) -> int:
    result = 0
    for char in value[:10]:
        result = result * 32 + CROCKFORD.index(char)
    return result


def ulid(ms: int, rand: int) -> str:
    def enc(v: int, n: int) -> str:
        return "".join(CROCKFORD[(v >> (5 * i)) & 31] for i in reversed(range(n)))

    return enc(ms, 10) + enc(rand, 16)


@dataclass
class State:
    """What the oracle needs to know, read from the tables (not modelled): the tables are the truth."""

    snapshot: dict[str, list[dict[str, Any]]]
    alice: str
    bob: str
    chat_limit: int = CHAT_LIMIT
    signal_limit: int = SIGNAL_LIMIT
    join_limit: int = JOIN_LIMIT

    def _items(self, table: str) -> list[dict[str, Any]]:
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in self.snapshot[table]]

    def members(self, room: str) -> dict[str, str]:
        return {i["connectionId"]: i["userId"] for i in self._items("MembershipsTable") if i["roomId"] == room and i["memberKey"].startswith("c#")}

    def wire_size(self, message_id: str) -> int:
        """UTF-8 bytes of the stored message as a Message object on the wire."""
        (row,) = [i for i in self._items("MessagesTable") if i["messageId"] == message_id]
        keys = ["messageId", "roomId", "userId", "name", "message", "timestamp", "clientMessageId"]
        wire: dict[str, Any] = {k: row[k] for k in keys if k in row}
        wire["version"] = int(row.get("version", 0))
        return len(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    def fit(self, room: str, page: list[str], more: bool, keep_newest: bool,
            extra: dict[str, Any] | None = None) -> tuple[list[str], bool]:
        """PROTOCOL.md: a chat_history frame stays within 128 KB, dropping from the end the client pages on from.

        `extra`: the frame's other fields (a join's `unreadCount`...), which take their share of the 128 KB."""
        used = len(json.dumps({"type": "chat_history", "data": {"roomId": room, "messages": [], "hasMore": False, **(extra or {})}},
                              ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        kept: list[str] = []
        for message_id in (reversed(page) if keep_newest else page):
            size = self.wire_size(message_id) + (1 if kept else 0)
            if used + size > 128 * 1024:
                break
            used += size
            kept.append(message_id)
        trimmed = len(kept) < len(page)
        return (kept[::-1] if keep_newest else kept), more or trimmed

    def messages(self, room: str) -> list[str]:
        return sorted(i["messageId"] for i in self._items("MessagesTable") if i["roomId"] == room)

    def changed(self, room: str, since: str) -> tuple[list[str], bool]:
        """PROTOCOL.md "Reconnecting": a rejoin's `changed` (without the frame's share, which no
        generated history reaches): the 100 messages at or before `since` last changed most recently
        at or after `since`'s millisecond, found among the room's 404 newest such changes (to any
        message); and whether there were more of them, or changes left unread past the 404."""
        rows = [i for i in self._items("MessagesTable") if i["roomId"] == room and "changedAtMs" in i
                and int(i["changedAtMs"]) >= ulid_ms(since)]
        read = sorted(rows, key=lambda i: (int(i["changedAtMs"]), i["messageId"]), reverse=True)[:404]
        older = [i["messageId"] for i in read if i["messageId"] <= since]
        return older[:100], len(older) > 100 or (len(rows) >= 404 and len(older) <= 100)

    def cursor(self, room: str, user: str) -> str | None:
        found = [i.get("messageId") for i in self._items("MembershipsTable") if i["roomId"] == room and i["memberKey"] == "r#" + user]
        return found[0] if found else None

    def original(self, user: str, room: str, cmid: str) -> str | None:
        found = [i["messageId"] for i in self._items("IdempotencyTable") if i["key"] == f"{user}#{room}#{cmid}"]
        return found[0] if found else None

    def hits(self, kind: str, user: str) -> int:
        return sum(int(i["hits"]) for i in self._items("IdempotencyTable") if i["key"].startswith(f"rate#{kind}#{user}#"))


@dataclass
class Expected:
    error: str | None = None  # the one error frame's code
    fields: set[str] | None = None  # validation_error: the fields `details` names
    request_type: str | None = None
    client_message_id: str | None = None
    sender: list[str] = field(default_factory=list)  # frame types the sender gets, in order
    bob: list[str] = field(default_factory=list)  # frame types the other member gets
    tables: str = "unchanged"  # or "rate:<kind>", "refused:<kind>:<limit>", or "accepted" (checked by `check`)
    check: Callable[..., None] | None = None  # extra checks on (frames, bob_frames, before, after)
    stores_message: bool = False


def cursor_position(cursor: str, room: str) -> str | None:
    """PROTOCOL.md: a cursor is the server's base64url JSON `{r: roomId, u: userId}`; the user it
    pages on from, or None when it is not one for this room."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(decoded, dict) or type(decoded.get("u")) is not str or decoded.get("r") != room:
        return None
    return decoded["u"]


def text_bytes(text: str) -> int:
    """PROTOCOL.md: the message limit counts UTF-8 bytes of the text as JSON carries it."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def usable_cmid(data: Any) -> str | None:
    value = data.get("clientMessageId") if isinstance(data, dict) else None
    return value if type(value) is str and 1 <= len(value) <= 64 else None


# Issue 13's frames: judged here up to "no such message"; what a change does to a stored message
# is tested in tests/domain/test_rooms.py, so the generators (strategies) do not send these.
MESSAGE_CHANGES = ("edit_message", "delete_message", "react")


def is_emoji(value: Any) -> bool:
    """The emoji rule has its own tests (tests/domain/test_reactions.py); here it is taken as given."""
    from parley.core.reactions import EmojiError, validate_emoji

    if type(value) is not str or len(value) > 64:
        return False
    try:
        validate_emoji(value)
    except EmojiError:
        return False
    return True


def field_errors(type_name: str, data: dict[str, Any]) -> set[str]:
    bad: set[str] = set()

    def require(key: str, ok: Callable[[Any], bool]) -> None:
        if key not in data or not ok(data[key]):
            bad.add(key)

    def optional(key: str, ok: Callable[[Any], bool], nullable: bool) -> None:
        if key in data and not ((nullable and data[key] is None) or ok(data[key])):
            bad.add(key)

    def is_room(v: Any) -> bool:
        if type(v) is not str or ROOM_RE.fullmatch(v) is None:
            return False
        if not v.startswith("dm:"):  # only a `dm:` prefix makes a DM id; plain `dm` is a room like any other
            return True
        pieces = v.split(":")  # a `dm:` id must name two different users in sorting order
        return len(pieces) == 3 and "" < pieces[1] < pieces[2]

    def is_ulid(v: Any) -> bool:
        return type(v) is str and ULID_RE.fullmatch(v) is not None

    def is_limit(v: Any) -> bool:
        return type(v) is int and 1 <= v <= 100  # bool is not an int here

    if type_name == "message":
        require("message", lambda v: True)
    if type_name in ("join_room", "leave_room", "chat_message", "typing", "mark_read", "get_history", "get_participants", *MESSAGE_CHANGES):
        require("roomId", is_room)
    if type_name in MESSAGE_CHANGES:
        require("messageId", is_ulid)
    if type_name == "edit_message":
        require("message", lambda v: type(v) is str and bool(v.strip()) and text_bytes(v) <= MAX_TEXT)
    if type_name == "react":
        require("emoji", is_emoji)
        optional("remove", lambda v: type(v) is bool, nullable=False)
    if type_name == "get_rooms":
        optional("limit", lambda v: type(v) is int and 1 <= v <= 50, nullable=False)
        optional("cursor", lambda v: type(v) is str and 1 <= len(v) <= 128 and "/" in v and v.split("/", 1)[1] != "", nullable=True)
    if type_name == "get_participants":
        optional("cursor", lambda v: type(v) is str and 1 <= len(v) <= 512, nullable=True)
        optional("limit", is_limit, nullable=False)
    if type_name == "join_room":
        optional("since", is_ulid, nullable=True)
        optional("limit", is_limit, nullable=False)
    if type_name == "get_history":
        optional("before", is_ulid, nullable=True)
        optional("limit", is_limit, nullable=False)
    if type_name == "chat_message":
        require("message", lambda v: type(v) is str and bool(v.strip()) and text_bytes(v) <= MAX_TEXT)
        optional("clientMessageId", lambda v: type(v) is str and 1 <= len(v) <= 64, nullable=True)
    if type_name == "typing":
        require("isTyping", lambda v: type(v) is bool)
    if type_name == "mark_read":
        require("messageId", is_ulid)
    return bad


def oracle(raw: str, state: State, now_ms: int) -> Expected:
    ok, frame = strict_json(raw)
    if not ok or not isinstance(frame, dict):
        return Expected(error="invalid_json")
    raw_type = frame.get("type")
    cmid = usable_cmid(frame.get("data"))
    if "type" not in frame or type(raw_type) is not str or raw_type not in ROUTES:
        request_type = raw_type if type(raw_type) is str else None
        return Expected(error="unknown_type", request_type=request_type, client_message_id=cmid)
    t = raw_type

    def reject(code: str, fields: set[str] | None = None, tables: str = "unchanged") -> Expected:
        return Expected(error=code, fields=fields, request_type=t, client_message_id=cmid, tables=tables)

    data = frame.get("data", {})
    data = {} if data is None else data
    if not isinstance(data, dict):
        return reject("validation_error", {"data"})
    bad = field_errors(t, data)
    if bad:
        return reject("validation_error", bad)
    if t == "mark_read" and ulid_ms(data["messageId"]) > now_ms + 60_000:
        return reject("validation_error", {"messageId"})

    alice, bob = state.alice, state.bob
    room = data.get("roomId")
    if room is not None and t != "leave_room" and room.startswith("dm:") and "alice" not in room.split(":")[1:]:
        return reject("forbidden")  # a DM belongs to its two users (the deployment is RoomAccess open)
    members = state.members(room) if room else {}
    member = alice in members
    bob_there = bob in members

    if t == "ping":
        return Expected(sender=["pong"])
    if t == "message":
        echo = data["message"]

        def check_echo(frames, bob_frames, before, after):
            assert frames[0]["data"]["status"] == "received"
            assert json.dumps(frames[0]["data"]["message"], sort_keys=True) == json.dumps(echo, sort_keys=True)

        return Expected(sender=["message_response"], check=check_echo)
    if t in ("join_room", "leave_room"):
        # The joins allowance is spent before the membership is written or deleted, whatever it finds;
        # a join over it is refused, a leave performed all the same (counted, from memory once over).
        assert state.hits("joins", "alice") + state.join_limit <= 10 * state.join_limit, "the run would reach the flood limit"
        over_known = state.hits("joins", "alice") > state.join_limit
        if t == "join_room" and over_known:
            return reject("rate_limited", tables=f"refused:joins:{state.join_limit}")
        if t == "join_room" and state.hits("joins", "alice") + 1 > state.join_limit:
            return reject("rate_limited", tables="rate:joins")
    if t == "join_room":
        limit, since = data.get("limit", 50), data.get("since")
        ids = state.messages(room)
        users = {u for u in members.values()} | {"alice"}

        def check_join(frames, bob_frames, before, after_state):
            assert {p["userId"] for p in frames[0]["data"]["participants"]} == users and frames[0]["data"]["count"] == len(users)
            history = frames[1]["data"]
            extra = {k: v for k, v in history.items() if k not in ("roomId", "messages", "hasMore")}  # the unread fields
            if since:
                changed, more_changed = state.changed(room, since)
                assert [m["messageId"] for m in history["changed"]] == changed and history["moreChanged"] == more_changed
                after_since = [i for i in ids if i > since]
                page, more = state.fit(room, after_since[:limit], len(after_since) > limit, keep_newest=False, extra=extra)
            else:
                page, more = state.fit(room, ids[-limit:], len(ids) > limit, keep_newest=True, extra=extra)
            assert history["roomId"] == room and [m["messageId"] for m in history["messages"]] == page and history["hasMore"] == more
            assert after_state.members(room).get(alice) == "alice"
            if not member:
                assert bob_frames == [] or bob_frames[0]["data"]["userId"] == "alice"

        joining = not member
        return Expected(
            sender=["participants_list", "chat_history"],
            bob=["user_joined"] if joining and bob_there else [],
            tables="accepted" if joining else "rate:joins",
            check=check_join,
        )
    if t == "leave_room":

        def check_leave(frames, bob_frames, before, after_state):
            assert alice not in after_state.members(room)

        counted = f"refused:joins:{state.join_limit}" if over_known else "rate:joins"
        return Expected(bob=["user_left"] if member and bob_there else [], tables="accepted" if member else counted, check=check_leave)

    after_user = None
    if t == "get_participants" and data.get("cursor") is not None:  # a cursor that does not decode spends nothing
        after_user = cursor_position(data["cursor"], room)
        if after_user is None:
            return reject("validation_error", {"cursor"})
    if t in ("chat_message", "typing", "mark_read", "get_rooms", "get_history", "get_participants", *MESSAGE_CHANGES):
        chat = t in ("chat_message", "edit_message", "delete_message")
        kind, limit = ("chat", state.chat_limit) if chat else ("signals", state.signal_limit)
        assert state.hits(kind, "alice") + limit <= 10 * limit, "the test would reach the flood limit; raise the limits"
        if state.hits(kind, "alice") > limit:
            # Over the allowance: refused before the membership check, from the environment's memory.
            return reject("rate_limited", tables=f"refused:{kind}:{limit}")

    if t == "get_rooms":
        if state.hits(kind, "alice") + 1 > limit:
            return reject("rate_limited", tables=f"rate:{kind}")
        return Expected(sender=["rooms_list"], tables=f"rate:{kind}")
    # members only from here. A room action's membership read and rate counter go out together:
    # over the allowance it is rate_limited, else a non-member's frame is not_a_member, both counted.
    charged = t in ("chat_message", "typing", "mark_read", "get_history", "get_participants", *MESSAGE_CHANGES)
    if charged and state.hits(kind, "alice") + 1 > limit:
        return reject("rate_limited", tables=f"rate:{kind}")
    if not member:
        return reject("not_a_member", tables=f"rate:{kind}" if charged else "unchanged")
    if t in MESSAGE_CHANGES:
        assert data["messageId"] not in state.messages(room), "changes to stored messages are judged in tests/domain/test_rooms.py"
        return reject("validation_error", {"messageId"}, tables=f"rate:{kind}")
    if t == "get_participants":
        users = sorted(set(members.values()))
        if after_user is not None and after_user not in users:
            return reject("validation_error", {"cursor"}, tables=f"rate:{kind}")  # stale: that participant left (read, so counted)
        rest = [u for u in users if after_user is None or u > after_user]
        limit = data.get("limit", 100)

        def check_participants(frames, bob_frames, before, after_state):
            page = frames[0]["data"]
            assert [p["userId"] for p in page["participants"]] == rest[:limit] and page["count"] == len(users)
            assert ("nextCursor" in page) == (len(rest) > limit)

        return Expected(sender=["participants_list"], tables=f"rate:{kind}", check=check_participants)
    if t == "get_history":
        limit, before_id = data.get("limit", 50), data.get("before")
        ids = [i for i in state.messages(room) if not before_id or i < before_id]

        page, more = state.fit(room, ids[-limit:], len(ids) > limit, keep_newest=True)

        def check_history(frames, bob_frames, before, after_state):
            history = frames[0]["data"]
            assert [m["messageId"] for m in history["messages"]] == page and history["hasMore"] == more

        return Expected(sender=["chat_history"], tables=f"rate:{kind}", check=check_history)
    if t == "typing":
        return Expected(bob=["typing_update"] if bob_there else [], tables=f"rate:{kind}")
    if t == "mark_read":
        cursor, read = state.cursor(room, "alice"), data["messageId"]
        advances = cursor is None or cursor < read

        def check_read(frames, bob_frames, before, after_state):
            assert after_state.cursor(room, "alice") == (read if advances else cursor)
            assert all(f["data"] == {"roomId": room, "messageId": read, "status": "read", "userId": "alice"} for f in bob_frames)

        return Expected(
            bob=["chat_update"] if advances and bob_there else [],
            tables="accepted" if advances else f"rate:{kind}",
            check=check_read,
        )
    # chat_message
    text, given_cmid = data["message"], data.get("clientMessageId")
    original = state.original("alice", room, given_cmid) if given_cmid is not None else None
    if original is not None:

        def check_duplicate(frames, bob_frames, before, after_state):
            assert frames[0]["data"]["messageId"] == original
            assert all(f["data"] == frames[0]["data"] for f in bob_frames)  # told again: the same message

        return Expected(sender=["message_received"], bob=["message_received"] if bob_there else [],
                        tables=f"rate:{kind}", check=check_duplicate)
    others = len([c for c in members if c != alice])

    def check_new(frames, bob_frames, before, after_state):
        new = sorted(set(after_state.messages(room)) - set(before.messages(room)))
        assert len(new) == 1 and len(after_state._items("MessagesTable")) == len(before._items("MessagesTable")) + 1
        received, update = frames
        assert received["data"]["messageId"] == new[0] and received["data"]["message"] == text
        assert received["data"].get("clientMessageId") == given_cmid
        assert update["data"] == {"roomId": room, "messageId": new[0], "status": "delivered", "deliveredTo": others}
        assert all(f["data"] == received["data"] for f in bob_frames)
        if given_cmid is not None:
            assert after_state.original("alice", room, given_cmid) == new[0]

    return Expected(
        sender=["message_received", "chat_update"],
        bob=["message_received"] if bob_there else [],
        tables="accepted",
        check=check_new,
        stores_message=True,
    )


# ---- running one frame against the oracle -------------------------------------------------


def assert_wire_frame(frame: Any) -> None:
    """What the server sends is one JSON object per WebSocket text frame: strict JSON, valid UTF-8."""
    assert isinstance(frame, dict) and set(frame) == {"type", "data"} and isinstance(frame["data"], dict), frame
    json.dumps(frame, allow_nan=False, ensure_ascii=False).encode("utf-8")


def assert_rate_only(kind: str, before: dict, after: dict, growth: tuple[int, ...] = (1,)) -> None:
    """Only alice's `rate#<kind>` counter changed, and it grew by one of `growth` (0: not at all)."""
    for table in ("MembershipsTable", "MessagesTable"):
        assert after[table] == before[table], f"{table} changed"
    old = [i for i in before["IdempotencyTable"] if i not in after["IdempotencyTable"]]
    new = [i for i in after["IdempotencyTable"] if i not in before["IdempotencyTable"]]
    if not new and not old and 0 in growth:
        return
    assert len(new) == 1 and new[0]["key"]["S"].startswith(f"rate#{kind}#alice#"), (old, new)
    assert [i["key"] for i in old] in ([], [new[0]["key"]])
    grew = int(new[0]["hits"]["N"]) - (int(old[0]["hits"]["N"]) if old else 0)
    assert grew in growth, (grew, growth)


def assert_tables(expected: Expected, before: dict, after: dict) -> None:
    """Rejected frames change nothing (a rate_limited one only its counter); accepted ones only what they should."""
    if expected.tables == "unchanged":
        assert after == before, "the tables changed"
    elif expected.tables.startswith("rate:"):
        assert_rate_only(expected.tables[5:], before, after)
    elif expected.tables.startswith("refused:"):
        # Refused from memory (or a leave of a room alice is not in, over the allowance): counted
        # later in a batch of `limit` (an environment that did not remember the user counts it at once).
        _, kind, limit = expected.tables.split(":")
        assert_rate_only(kind, before, after, growth=(0, 1, int(limit)))
    else:  # accepted: `check` looked at what it should change; nothing else may
        if not expected.stores_message:
            assert after["MessagesTable"] == before["MessagesTable"]


def assert_one_error(frames: list[dict], bob_frames: list[dict], expected: Expected, route: str) -> None:
    """Exactly one `error` frame to the sender, with the code, fields and echoes the oracle predicts."""
    assert len(frames) == 1 and frames[0]["type"] == "error", frames
    data = frames[0]["data"]
    assert data["code"] == expected.error and data["code"] in ERROR_CODES, (data, expected)
    assert isinstance(data["message"], str) and data["message"] and "Traceback" not in data["message"]
    request_type = expected.request_type
    if expected.error == "invalid_json" and route != "$default":
        request_type = route  # API Gateway's parser went deeper than Python's and routed it
    assert data.get("requestType") == request_type, data
    assert data.get("clientMessageId") == expected.client_message_id, data
    if expected.fields is not None:
        assert {d["field"] for d in data["details"]} == expected.fields, data["details"]
    if expected.error == "rate_limited":
        assert type(data["retryAfterMs"]) is int and data["retryAfterMs"] > 0
    assert bob_frames == [], "a rejected frame reached another member"


def run(world, alice, bob, make_raw: Callable[[State], str] | str) -> None:
    """Send one frame from alice and check everything the oracle predicts for it."""
    before = world.snapshot()
    state = State(before, alice.connection_id, bob.connection_id, *world.oracle_limits)
    raw = make_raw if isinstance(make_raw, str) else make_raw(state)
    expected = oracle(raw, state, world.now_ms())
    ok, frame = strict_json(raw)
    label = frame.get("type") if ok and isinstance(frame, dict) and frame.get("type") in ROUTES else "-"
    event(f"{label}: {expected.error or ' + '.join(expected.sender) or 'no reply'} (bob: {expected.bob}, tables: {expected.tables})")
    delivery = world.deliver(alice, raw)  # nothing raised
    frames, bob_frames = alice.take(), bob.take()
    after = world.snapshot()
    if delivery.body is not None:
        ok, _ = strict_json(delivery.body)
        assert ok, f"the route response is not JSON: {delivery.body[:200]!r}"
        delivery.body.encode("utf-8")
    for frame in frames + bob_frames:
        assert_wire_frame(frame)

    if expected.error is not None:
        assert_one_error(frames, bob_frames, expected, delivery.route)
    else:
        assert [f["type"] for f in frames] == expected.sender, (frames, expected)
        assert [f["type"] for f in bob_frames] == expected.bob, (bob_frames, expected)
        # the last frame to the sender is the route response; the others went through @connections
        assert (delivery.reply or {}).get("type") == (expected.sender[-1] if expected.sender else None)
        if expected.check is not None:
            expected.check(frames, bob_frames, state, State(after, alice.connection_id, bob.connection_id))

    assert_tables(expected, before, after)


def run_lenient(world, alice, bob, raw: str, must_reject: bool, code: str | None = None) -> None:
    """For frames whose documented outcome is "rejected" or "whatever, but never broken output"."""
    before = world.snapshot()
    delivery = world.deliver(alice, raw)
    frames, bob_frames = alice.take(), bob.take()
    if delivery.body is not None:
        assert strict_json(delivery.body)[0], f"the route response is not JSON: {delivery.body[:120]!r}"
    for frame in frames + bob_frames:
        assert_wire_frame(frame)
    errors = [f for f in frames if f["type"] == "error"]
    assert all(f["data"]["code"] in ERROR_CODES for f in errors), errors
    assert not [f for f in errors if f["data"]["code"] == "internal_error"], errors
    if must_reject or errors:
        assert len(frames) == 1 and len(errors) == 1 and bob_frames == [], frames
        assert code is None or errors[0]["data"]["code"] == code, errors
        assert world.snapshot() == before, "the tables changed"
