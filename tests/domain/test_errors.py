"""Every bad frame gets exactly one `error` frame back and changes nothing (PROTOCOL.md, "Errors")."""

from __future__ import annotations

import json

import pytest

from parley.core.ids import ulid_at
from parley.core.rate_limits import OverLimitMemory, RateLimits
from parley_testing.chat_world import alice_and_bob_in_lobby


@pytest.fixture
def room(world):
    return alice_and_bob_in_lobby(world)


def without_counter(snapshot, key_prefix):
    """The tables without the one rate counter a refused frame may be charged to."""
    return {**snapshot, "IdempotencyTable": [i for i in snapshot["IdempotencyTable"] if not i["key"]["S"].startswith(key_prefix)]}


def counter_hits(snapshot, key_prefix) -> int:
    return sum(int(i["hits"]["N"]) for i in snapshot["IdempotencyTable"] if i["key"]["S"].startswith(key_prefix))


def assert_one_error(world, client, raw, code, *, request_type=None, fields=None, others=(), charged=None):
    """`charged`: the frame counts once against that rate counter (`rate#<kind>#<user>#`); nothing else changes."""
    before = world.snapshot()
    client.send(raw=raw)
    frames = client.take()
    assert len(frames) == 1, frames
    (frame,) = frames
    assert frame["type"] == "error"
    data = frame["data"]
    assert data["code"] == code, data
    assert isinstance(data["message"], str) and data["message"]
    assert "Traceback" not in data["message"]
    if request_type is not None:
        assert data["requestType"] == request_type
    if fields is not None:
        assert sorted(d["field"] for d in data["details"]) == sorted(fields)
    after = world.snapshot()
    if charged is not None:
        assert counter_hits(after, charged) == counter_hits(before, charged) + 1, "the refused frame was not counted"
        before, after = without_counter(before, charged), without_counter(after, charged)
    assert after == before, "a rejected frame changed the tables"
    for other in others:
        assert other.take() == []
    return data


@pytest.mark.parametrize("raw", ["not json", "", "{", "[1, 2]", '"ping"', "42", "null", "{\"type\": \"ping\"", "[" * 5000 + "]" * 5000])
def test_invalid_json(world, room, raw):
    alice, bob = room
    assert_one_error(world, alice, raw, "invalid_json", others=[bob])


@pytest.mark.parametrize("raw", ['{"type": "dance"}', '{"data": {}}', '{"type": 7}', '{"type": null}', '{"type": "$connect"}'])
def test_unknown_type(world, room, raw):
    alice, bob = room
    data = assert_one_error(world, alice, raw, "unknown_type", others=[bob])
    assert "join_room" in data["message"]  # tells the user what to send instead
    if json.loads(raw).get("type") == "dance":
        assert data["requestType"] == "dance"


VALIDATION_CASES = [
    ("message", {}, ["message"]),
    ("join_room", {}, ["roomId"]),
    ("join_room", {"roomId": "has space"}, ["roomId"]),
    ("join_room", {"roomId": "x" * 65}, ["roomId"]),
    ("join_room", {"roomId": 5}, ["roomId"]),
    ("join_room", {"roomId": "lobby", "limit": 0}, ["limit"]),
    ("join_room", {"roomId": "lobby", "limit": 101}, ["limit"]),
    ("join_room", {"roomId": "lobby", "limit": "5"}, ["limit"]),
    ("join_room", {"roomId": "lobby", "limit": True}, ["limit"]),
    ("join_room", {"roomId": "lobby", "since": "not-a-ulid"}, ["since"]),
    ("leave_room", {"roomId": ""}, ["roomId"]),
    ("chat_message", {"roomId": "lobby"}, ["message"]),
    ("chat_message", {"roomId": "lobby", "message": ""}, ["message"]),
    ("chat_message", {"roomId": "lobby", "message": "   "}, ["message"]),
    ("chat_message", {"roomId": "lobby", "message": "x" * 4001}, ["message"]),
    ("chat_message", {"roomId": "lobby", "message": 12}, ["message"]),
    ("chat_message", {"roomId": "lobby", "message": "hi", "clientMessageId": ""}, ["clientMessageId"]),
    ("chat_message", {"roomId": "lobby", "message": "hi", "clientMessageId": "x" * 65}, ["clientMessageId"]),
    ("chat_message", {"message": "hi", "roomId": None}, ["roomId"]),
    ("typing", {"roomId": "lobby", "isTyping": "yes"}, ["isTyping"]),
    ("typing", {"roomId": "lobby"}, ["isTyping"]),
    ("mark_read", {"roomId": "lobby"}, ["messageId"]),
    ("mark_read", {"roomId": "lobby", "messageId": "0" * 25}, ["messageId"]),
    ("get_history", {"roomId": "lobby", "before": 3}, ["before"]),
    ("get_history", {"roomId": "lobby", "limit": 1000}, ["limit"]),
]


@pytest.mark.parametrize("type_name,data,fields", VALIDATION_CASES)
def test_validation_error_lists_fields(world, room, type_name, data, fields):
    alice, bob = room
    raw = json.dumps({"type": type_name, "data": data})
    assert_one_error(world, alice, raw, "validation_error", request_type=type_name, fields=fields, others=[bob])


def test_data_that_is_not_an_object(world, room):
    alice, bob = room
    assert_one_error(world, alice, '{"type": "join_room", "data": [1]}', "validation_error", fields=["data"], others=[bob])


def test_mark_read_of_a_future_message_is_refused(world, room):
    alice, bob = room
    future = ulid_at(4_000_000_000_000)
    raw = json.dumps({"type": "mark_read", "data": {"roomId": "lobby", "messageId": future}})
    assert_one_error(world, alice, raw, "validation_error", fields=["messageId"], others=[bob])


def test_error_echoes_client_message_id(world, room):
    alice, bob = room
    raw = json.dumps({"type": "chat_message", "data": {"roomId": "lobby", "message": "", "clientMessageId": "abc"}})
    data = assert_one_error(world, alice, raw, "validation_error", others=[bob])
    assert data["clientMessageId"] == "abc"


@pytest.mark.parametrize(
    "type_name,data",
    [
        ("chat_message", {"roomId": "elsewhere", "message": "hi"}),
        ("typing", {"roomId": "elsewhere", "isTyping": True}),
        ("mark_read", {"roomId": "elsewhere", "messageId": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        ("get_history", {"roomId": "elsewhere"}),
    ],
)
def test_not_a_member(world, room, type_name, data):
    alice, bob = room
    outsider = world.connect("mallory")
    outsider.send("join_room", {"roomId": "elsewhere2"})
    outsider.take()
    raw = json.dumps({"type": type_name, "data": {**data, "roomId": "lobby"}})
    # A room action's membership read and rate counter go out together, so the refused frame counts
    # against the outsider's allowance (and only that).
    kind = {"chat_message": "chat", "typing": "signals", "mark_read": "signals", "get_history": "signals"}[type_name]
    charged = f"rate#{kind}#mallory#"
    data_ = assert_one_error(world, outsider, raw, "not_a_member", request_type=type_name, others=[alice, bob], charged=charged)
    assert "join_room" in data_["message"]


@pytest.fixture
def tight_limits(world):
    world.limits = RateLimits(chat=3, signals=2, window_seconds=60)


def rate_counters(world):
    return {i["key"]["S"]: int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#")}


def test_rate_limited_after_the_allowance_with_retry_after(world, room, tight_limits):
    alice, bob = room
    for n in range(3):
        assert alice.send("chat_message", {"roomId": "lobby", "message": f"m{n}"})["type"] == "chat_update"
    alice.take(), bob.take()
    messages_before = world.items("MessagesTable")
    alice.send(raw=json.dumps({"type": "chat_message", "data": {"roomId": "lobby", "message": "too many", "clientMessageId": "z"}}))
    (frame,) = alice.take()
    assert frame["data"]["code"] == "rate_limited" and frame["data"]["requestType"] == "chat_message"
    assert 0 < frame["data"]["retryAfterMs"] <= 60_000 and frame["data"]["clientMessageId"] == "z"
    assert "Retry in" in frame["data"]["message"]
    assert world.items("MessagesTable") == messages_before and bob.take() == []
    # Typing and read receipts have their own allowance, and another user is unaffected.
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True}) is None
    assert bob.send("chat_message", {"roomId": "lobby", "message": "still fine"})["type"] == "chat_update"
    alice.send("typing", {"roomId": "lobby", "isTyping": False})
    world.collect(), alice.take(), bob.take()
    alice.send("typing", {"roomId": "lobby", "isTyping": True})
    assert [f["data"]["code"] for f in alice.take()] == ["rate_limited"] and bob.take() == []


def test_invalid_frames_do_not_spend_the_allowance_and_frames_to_a_room_one_is_not_in_do(world, room, tight_limits):
    alice, bob = room
    counters = rate_counters(world)
    for _ in range(5):
        alice.send("chat_message", {"roomId": "lobby", "message": ""})  # validation_error: refused before any I/O
    alice.take()
    assert rate_counters(world) == counters
    # not_a_member: the room's Query and the counter's UpdateItem go out together, so it is
    # counted (3 per window here), and a flood of them is limited like any other.
    codes = [alice.send("chat_message", {"roomId": "nowhere", "message": "x"})["data"]["code"] for _ in range(4)]
    assert codes == ["not_a_member"] * 3 + ["rate_limited"]
    assert alice.send("chat_message", {"roomId": "lobby", "message": "now over"})["data"]["code"] == "rate_limited"
    assert bob.send("chat_message", {"roomId": "lobby", "message": "bob's own allowance"})["type"] == "chat_update"


def test_a_flood_far_over_the_limit_closes_the_connection(world, room, tight_limits):
    alice, bob = room
    closed = world.closed
    for n in range(3 * 10):
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {n}"})
    assert closed == []  # 10x the allowance is tolerated...
    alice.send("chat_message", {"roomId": "lobby", "message": "one more"})
    assert len(closed) == 1  # ...beyond it, DeleteConnection
    assert [f["data"]["message"] for f in bob.take() if f["type"] == "message_received"] == ["flood 0", "flood 1", "flood 2"]


def test_a_user_over_the_limit_is_refused_before_the_membership_check(world, room, tight_limits):
    alice, bob = room
    replies = [alice.send("chat_message", {"roomId": "lobby", "message": f"m{n}"}) for n in range(4)]
    assert [r["type"] for r in replies[:3]] == ["chat_update"] * 3 and replies[3]["data"]["code"] == "rate_limited"
    alice.take(), bob.take()
    # A room alice is not in: she is over the allowance, and that is what she must wait for.
    assert_one_error(world, alice, json.dumps({"type": "chat_message", "data": {"roomId": "nowhere", "message": "x"}}), "rate_limited")
    # Validation still comes first: bad input is named as such.
    assert_one_error(world, alice, json.dumps({"type": "chat_message", "data": {"roomId": "lobby", "message": ""}}), "validation_error")
    # Another user and another allowance are untouched.
    assert_one_error(world, bob, json.dumps({"type": "chat_message", "data": {"roomId": "nowhere", "message": "x"}}), "not_a_member",
                     charged="rate#chat#bob#")
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True}) is None
    assert [f["type"] for f in bob.take()] == ["typing_update"]


def test_a_flood_spread_over_two_environments_is_still_counted_and_closed(world, room, tight_limits):
    """Each Lambda environment remembers its own refusals; the shared counter sees both shares."""
    alice, bob = room
    closed = world.closed
    environments = [OverLimitMemory(), OverLimitMemory()]
    sent = 0
    while not closed and sent < 60:
        world.over_limit = environments[sent % 2]
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {sent}"})
        sent += 1
    assert closed == [alice.connection_id]
    # 30 counted closes it; each environment may hold back at most one batch (the limit) minus one.
    assert 31 <= sent <= 31 + 2 * (3 - 1), sent
    hits = sum(n for key, n in rate_counters(world).items() if key.startswith("rate#chat#"))  # not the joins'
    assert 31 <= hits <= sent, (hits, sent)


def test_the_allowance_is_whole_again_in_the_next_window(world, room):
    window = 3
    world.limits = RateLimits(chat=2, window_seconds=window)
    alice, bob = room
    world.clock.advance(window * 1000 - world.clock() % (window * 1000))  # the start of a window
    replies = [alice.send("chat_message", {"roomId": "lobby", "message": f"w1 {n}"}) for n in range(4)]
    codes = [r["data"]["code"] if r["type"] == "error" else r["type"] for r in replies]
    assert codes == ["chat_update", "chat_update", "rate_limited", "rate_limited"]
    assert replies[2]["data"]["retryAfterMs"] == window * 1000
    world.clock.advance(window * 1000 - 1)  # the last millisecond of the window: still over
    assert alice.send("chat_message", {"roomId": "lobby", "message": "w1 late"})["data"]["retryAfterMs"] == 1
    world.clock.advance(1)
    assert alice.send("chat_message", {"roomId": "lobby", "message": "w2"})["type"] == "chat_update"
