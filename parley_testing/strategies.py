"""Hypothesis strategies for every frame a client can send: text that is not JSON, JSON that is not
an object, wrong types, deep nesting, huge strings, control characters and unicode, unknown and
missing fields, unknown types, and frames of every type with valid and invalid field values.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import HealthCheck, example, settings
from hypothesis import strategies as st

from .chat_world import V1_ROUTES
from .oracle import MAX_TEXT, NOW_MS, ROOM_RE, ULID_RE, State, ulid

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


MISSING = object()


@dataclass(frozen=True)
class Existing:
    """A messageId stored in the frame's room (the n-th, modulo), resolved when the frame is sent."""

    n: int


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12
)
control_text = st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), min_size=1, max_size=10)
huge_text = st.builds(lambda chars, n: (chars * (n // max(1, len(chars)) + 1))[:n], st.text(min_size=1, max_size=5), st.integers(0, 40_000))
any_text = st.one_of(st.text(max_size=30), control_text, huge_text, st.text(st.characters(min_codepoint=0x80), max_size=10))

# Each field: (valid values, invalid values). Most frames carry valid values, so the checks past
# validation (membership, rate limits, duplicates, history pages, read cursors) are reached often.
valid_rooms = st.one_of(
    st.sampled_from(["lobby"] * 6 + ["side"] * 3 + ["nowhere"]), st.sampled_from(["lobby"] * 6 + ["side"] * 3 + ["nowhere"]),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
)
invalid_rooms = st.one_of(
    st.sampled_from(["", "x" * 65, "lobby\n", "\nlobby", "lob by", "lobby\x00", "ロビー", "lobby/../x", "lobby#c"]),
    any_text.filter(lambda v: ROOM_RE.fullmatch(v) is None),
    json_values.filter(lambda v: not isinstance(v, str)),
)
past_ulids = st.builds(ulid, st.integers(0, NOW_MS), st.integers(0, 2**80 - 1))
valid_ids = st.one_of(st.builds(Existing, st.integers(0, 1000)), st.builds(Existing, st.integers(0, 1000)), past_ulids)
invalid_ids = st.one_of(
    st.from_regex(ULID_RE, fullmatch=True),  # the right shape, but (almost always) minted far in the future
    st.builds(ulid, st.integers(NOW_MS + 86_400_000, 2**48 - 1), st.integers(0, 2**80 - 1)),
    past_ulids.map(str.lower),
    past_ulids.map(lambda u: u[:25]),
    past_ulids.map(lambda u: u + "0"),
    past_ulids.map(lambda u: "8" + u[1:]),
    past_ulids.map(lambda u: u[:5] + "U" + u[6:]),
    past_ulids.map(lambda u: u + "\n"),
    any_text,
    json_values.filter(lambda v: v is not None),
)
valid_limits = st.one_of(st.integers(1, 100), st.integers(1, 5), st.sampled_from([1, 2, 100]))
invalid_limits = st.one_of(st.sampled_from([0, 101, -1, True, False, 5.0, "5", None]), st.integers().filter(lambda n: not 1 <= n <= 100), json_values)
valid_texts = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda v: v.strip() != ""),
    st.builds(lambda c, t: c + "x" + t, control_text, control_text),
    st.integers(MAX_TEXT - 3, MAX_TEXT).map(lambda n: " " + "é" * ((n - 1) // 2)),  # 2 bytes each: at the limit
    st.just("y" * MAX_TEXT),
)
invalid_texts = st.one_of(
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000"), min_size=0, max_size=5),
    st.integers(MAX_TEXT + 1, MAX_TEXT + 3).map(lambda n: "y" * n),
    st.integers(MAX_TEXT // 2 + 1, MAX_TEXT // 2 + 3).map(lambda n: "é" * n),  # under the limit in characters, over in bytes
    st.integers(MAX_TEXT // 6 + 1, MAX_TEXT // 6 + 3).map(lambda n: "\x01" * n),  # each sent as \u0001
    huge_text.filter(lambda v: len(v) > MAX_TEXT or not v.strip()),
    json_values.filter(lambda v: not isinstance(v, str)),
)
valid_cmids = st.one_of(st.sampled_from(["c1", "c2", "c3", "c4"]), st.text(min_size=1, max_size=64), st.none())
invalid_cmids = st.one_of(st.just(""), st.integers(65, 70).map(lambda n: "k" * n), json_values.filter(lambda v: v is not None and not isinstance(v, str)))
invalid_flags = st.one_of(st.sampled_from([0, 1, "true", None, [True]]), json_values.filter(lambda v: not isinstance(v, bool)))

def _cursor(room: str, user: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"r": room, "u": user}).encode()).decode().rstrip("=")


valid_cursors = st.one_of(st.none(), st.sampled_from([_cursor("lobby", "alice"), _cursor("lobby", "a"), _cursor("side", "alice")]))
invalid_cursors = st.one_of(
    st.sampled_from([_cursor("lobby", "mallory"), _cursor("elsewhere", "alice"), _cursor("lobby", "alice") + "x", "e30", ""]),
    any_text, json_values.filter(lambda v: v is not None and not isinstance(v, str)),
)

FIELDS: dict[str, dict[str, tuple[st.SearchStrategy, st.SearchStrategy]]] = {
    "message": {"message": (json_values | any_text, json_values)},  # any JSON is valid: there is no invalid value
    "ping": {},
    "join_room": {"roomId": (valid_rooms, invalid_rooms), "since": (valid_ids | st.none(), invalid_ids), "limit": (valid_limits, invalid_limits)},
    "leave_room": {"roomId": (valid_rooms, invalid_rooms)},
    "chat_message": {"roomId": (valid_rooms, invalid_rooms), "message": (valid_texts, invalid_texts), "clientMessageId": (valid_cmids, invalid_cmids)},
    "typing": {"roomId": (valid_rooms, invalid_rooms), "isTyping": (st.booleans(), invalid_flags)},
    "mark_read": {"roomId": (valid_rooms, invalid_rooms), "messageId": (valid_ids, invalid_ids)},
    "get_history": {"roomId": (valid_rooms, invalid_rooms), "before": (valid_ids | st.none(), invalid_ids), "limit": (valid_limits, invalid_limits)},
    "get_participants": {"roomId": (valid_rooms, invalid_rooms), "cursor": (valid_cursors, invalid_cursors), "limit": (valid_limits, invalid_limits)},
}
REQUIRED = {"roomId", "message", "isTyping", "messageId"}


@st.composite
def typed_data(draw, type_name: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:  # unknown fields, including an attempt to speak for someone else
        data.update(draw(st.dictionaries(st.sampled_from(["userId", "name", "extra", "type", "x" * 100]), json_values, max_size=3)))
    for key, (valid, invalid) in FIELDS[type_name].items():
        if draw(st.integers(0, 19)) < (19 if key in REQUIRED else 8):  # present
            data[key] = draw(invalid if draw(st.integers(0, 9)) == 0 else valid)
    return data


@st.composite
def typed_frames(draw) -> dict[str, Any]:
    type_name = draw(st.sampled_from(V1_ROUTES + ["chat_message"] * 3 + ["join_room", "typing", "mark_read", "get_history"]))
    frame: dict[str, Any] = {"type": type_name}
    shape = draw(st.integers(0, 39))
    if shape == 0:
        pass  # data omitted: {}
    elif shape == 1:
        frame["data"] = None
    elif shape == 2:
        frame["data"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    else:
        frame["data"] = draw(typed_data(type_name))
    if draw(st.integers(0, 9)) == 0:
        frame.update(draw(st.dictionaries(st.sampled_from(["id", "userId", "version", "meta"]), json_values, max_size=2)))
    return frame


def nest(depth: int, opener: str, inner: str) -> str:
    return opener * depth + inner + ("]" if opener == "[" else "}") * depth


def deep_frame(depth: int, opener: str, where: str) -> str:
    """A frame nested `depth` levels deep in one place (deeper than a JSON parser goes, it is
    routed to `$default` like any frame the route selection cannot read)."""
    if where == "frame":
        return nest(depth, opener, "1" if opener == "[" else "{}")
    if where == "message":
        return '{"type":"message","data":{"message":' + nest(depth, opener, "1" if opener == "[" else "{}") + "}}"
    if where == "roomId":
        return '{"type":"join_room","data":{"roomId":' + nest(depth, opener, '"lobby"' if opener == "[" else "{}") + "}}"
    return '{"type":"chat_message","data":' + nest(depth, '{"a":', "{}") + "}"


deep_frames = st.builds(
    deep_frame,
    st.one_of(st.integers(1, 50), st.integers(50, 20_000)),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(["frame", "message", "roomId", "data"]),
)

garbage = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    huge_text,
    st.sampled_from(["", " ", "null", "true", "0", '""', "[]", "{", "}", '{"type":"ping"', '{"type":"ping"}}', "{'type': 'ping'}", '{"type":"ping",}', "\ufeff{}", '{"type":"ping"}\n{"type":"ping"}']),
    json_values.map(json.dumps),  # JSON that is mostly not an object
    st.builds(lambda f, cut: json.dumps(f, default=lambda _: "01ARZ3NDEKTSV4RRFFQ69G5FAV")[:cut], typed_frames(), st.integers(0, 60)),  # truncated frames
)

envelopes = st.builds(
    lambda type_value, data, extra: {**extra, **({} if type_value is MISSING else {"type": type_value}), **({} if data is MISSING else {"data": data})},
    st.one_of(st.just(MISSING), st.sampled_from(["dance", "", "PING", "ping ", "chat-message", "$default", "$connect", "$disconnect", "__proto__"]), any_text, json_values),
    st.one_of(st.just(MISSING), json_values),
    st.dictionaries(st.text(max_size=6), json_values, max_size=2),
)


def materialize(value: Any, state: State, room: Any) -> Any:
    if isinstance(value, Existing):
        ids = state.messages(room if isinstance(room, str) else "lobby") or state.messages("lobby")
        return ids[value.n % len(ids)]
    if isinstance(value, dict):
        return {k: materialize(v, state, room) for k, v in value.items()}
    return value


malformed_frames = st.one_of(garbage, envelopes.map(json.dumps), deep_frames)
MALFORMED_EXAMPLES = [deep_frame(5000, "[", "frame"), deep_frame(20_000, "[", "message"), '{"type": "ping", "data": {"roomId": "\\u0000\\u001f"}}']


def serializer(frame: dict[str, Any], ascii_only: bool, spaced: bool) -> Callable[[State], str]:
    def make_raw(state: State) -> str:
        data = frame.get("data")
        room = data.get("roomId") if isinstance(data, dict) else None
        resolved = materialize(frame, state, room)
        return json.dumps(resolved, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":"))

    return make_raw



def _typed_examples() -> list[dict[str, Any]]:
    """Explicit examples run first, in this order, on `seed_room`'s 3 messages in lobby."""
    frames = [
        ({"type": "get_history", "data": {"roomId": "lobby", "limit": 3}}, True, False),
        ({"type": "join_room", "data": {"roomId": "lobby", "limit": 3}}, True, False),
        ({"type": "join_room", "data": {"roomId": "lobby", "since": Existing(0), "limit": 2}}, True, False),
        ({"type": "get_history", "data": {"roomId": "lobby", "before": Existing(2), "limit": 1}}, True, False),
        ({"type": "chat_message", "data": {"roomId": "lobby", "message": "hi", "clientMessageId": "c1", "userId": "mallory"}}, True, False),
        ({"type": "chat_message", "data": {"roomId": "lobby", "message": "hi again", "clientMessageId": "c1"}}, True, False),
        ({"type": "join_room", "data": {"roomId": "lobby\n"}}, True, False),
        ({"type": "join_room", "data": {"roomId": "lobby", "limit": True}}, True, False),
        ({"type": "mark_read", "data": {"roomId": "lobby", "messageId": Existing(1)}}, True, False),
        ({"type": "leave_room", "data": {"roomId": "side"}}, False, True),
        ({"type": "typing", "data": {"roomId": "side", "isTyping": True}}, False, True),
        # `dm` alone is an ordinary room id: only a `dm:` prefix makes a direct-message id
        ({"type": "typing", "data": {"roomId": "dm", "isTyping": False}}, False, False),
        ({"type": "leave_room", "data": {"roomId": "dm"}}, False, False),
        ({"type": "join_room", "data": {"roomId": "dm:"}}, False, False),
    ]
    return [{"frame": frame, "ascii_only": ascii_only, "spaced": spaced} for frame, ascii_only, spaced in frames]


def with_examples(examples: list[dict[str, Any]]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Apply `examples` (keyword arguments) as Hypothesis explicit examples, run in list order."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        for kwargs in reversed(examples):
            test = example(**kwargs)(test)
        return test

    return decorate


TYPED_EXAMPLES = _typed_examples()

surrogates = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
