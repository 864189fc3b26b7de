"""The allowance counted in batches (`AllowanceLedger`) through `ChatService` and the in-memory
store: what a user observes, and which frames write the shared counter."""

from __future__ import annotations

import pytest

from parley.core.rate_limits import ABUSE_FACTOR, AllowanceLedger, OverLimitMemory
from parley_testing.chat_world import alice_and_bob_in_lobby

LIMIT, BATCH, WINDOW_S = 30, 5, 10


@pytest.fixture
def room(world):
    world.use_limits(chat=LIMIT, signals=120, window_seconds=WINDOW_S, chat_batch=BATCH, signals_batch=11)
    clients = alice_and_bob_in_lobby(world)  # alice's seed message is in the window before
    world.clock.advance(WINDOW_S * 1000 - world.clock() % (WINDOW_S * 1000))  # the start of a window
    return clients


def counter(world, kind="chat", user="alice") -> int:
    prefix = f"rate#{kind}#{user}#"
    return sum(int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith(prefix))


def writes(world) -> int:
    return world.store.calls.get("count_request", 0)


def chat(client, text="hi"):
    reply = client.send("chat_message", {"roomId": "lobby", "message": text})
    return reply["type"] if reply["type"] != "error" else reply["data"]["code"]


def test_a_slow_sender_never_writes_the_counter_and_everyone_gets_the_messages(world, room):
    alice, bob = room
    before = writes(world)
    for window in range(3):
        assert [chat(alice, f"w{window} m{n}") for n in range(BATCH - 1)] == ["chat_update"] * (BATCH - 1)
        world.clock.advance(WINDOW_S * 1000)
    assert writes(world) == before and counter(world) == 0
    assert len([f for f in bob.take() if f["type"] == "message_received"]) == 3 * (BATCH - 1)


def test_the_kth_frame_writes_the_batch_with_the_room_query(world, room):
    alice, _ = room
    for _ in range(BATCH - 1):
        chat(alice)
    before = dict(world.store.calls)
    assert chat(alice) == "chat_update"
    assert world.store.calls["count_request"] - before.get("count_request", 0) == 1 and counter(world) == BATCH


def test_one_environment_refuses_the_31st_frame_and_only_after_a_write(world, room):
    alice, bob = room
    assert [chat(alice, f"m{n}") for n in range(LIMIT)] == ["chat_update"] * LIMIT
    assert counter(world) == LIMIT  # near the limit every frame was counted: nothing is left behind
    bob.take()
    before = writes(world)
    reply = alice.send("chat_message", {"roomId": "lobby", "message": "too many"})
    assert reply["data"]["code"] == "rate_limited" and 0 < reply["data"]["retryAfterMs"] <= WINDOW_S * 1000
    assert writes(world) == before + 1 and counter(world) == LIMIT + 1
    assert [f for f in bob.take() if f["type"] == "message_received"] == []
    # Another user, and the next window, have their whole allowance.
    assert chat(bob) == "chat_update"
    world.clock.advance(WINDOW_S * 1000)
    assert chat(alice, "next window") == "chat_update"


def test_two_environments_overshoot_by_at_most_k_minus_1(world, room):
    alice, bob = room
    environments = [(world.over_limit, world.ledger), (OverLimitMemory(), AllowanceLedger())]
    # The second environment takes k-1 frames first (below its batch: no write), then the first one
    # takes the rest: it sees only its own share on the counter.
    replies = []
    for env in [1] * (BATCH - 1) + [0] * (2 * LIMIT):
        world.over_limit, world.ledger = environments[env]
        replies.append(chat(alice))
    accepted = replies.count("chat_update")
    assert LIMIT <= accepted <= LIMIT + (BATCH - 1)
    assert accepted == LIMIT + BATCH - 1  # this order reaches the bound
    delivered = [f for f in bob.take() if f["type"] == "message_received"]
    assert len(delivered) == accepted
    # The second environment's next frame writes its share with it, reads the total, and is refused.
    world.over_limit, world.ledger = environments[1]
    assert chat(alice) == "rate_limited"


def test_a_frame_to_a_room_the_user_is_not_in_still_spends_the_allowance(world, room):
    alice, _ = room
    codes = [alice.send("chat_message", {"roomId": "nowhere", "message": "x"})["data"]["code"] for _ in range(LIMIT + 1)]
    assert codes == ["not_a_member"] * LIMIT + ["rate_limited"]
    assert chat(alice) == "rate_limited"


def test_get_rooms_spends_the_signals_allowance_in_batches(world, room):
    alice, _ = room
    before = writes(world)
    for _ in range(10):
        assert alice.send("get_rooms")["type"] == "rooms_list"
    assert writes(world) == before
    alice.send("get_rooms")
    assert writes(world) == before + 1 and counter(world, "signals") == 11


@pytest.mark.parametrize("kind, data", [("get_history", {"roomId": "lobby"}), ("get_participants", {"roomId": "lobby"})])
def test_the_room_reads_spend_the_signals_allowance_and_are_refused_over_it(world, room, kind, data):
    """Each is a GetItem and a Query of someone's money: a client looping on one is limited like typing."""
    alice, _ = room
    before = writes(world)
    for _ in range(10):
        assert alice.send(kind, data)["type"] != "error"
    assert writes(world) == before  # in batches, as every signal: no counter write yet
    alice.send(kind, data)
    assert writes(world) == before + 1 and counter(world, "signals") == 11
    while counter(world, "signals") < 120:
        assert alice.send(kind, data)["type"] != "error"
    refused = alice.send(kind, data)["data"]
    assert (refused["code"], refused["requestType"]) == ("rate_limited", kind) and refused["retryAfterMs"] > 0
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True})["data"]["code"] == "rate_limited"  # one allowance


def test_a_flood_is_still_counted_and_closed(world, room):
    alice, _ = room
    sent = 0
    while not world.closed and sent < 2 * LIMIT * ABUSE_FACTOR:
        chat(alice, f"flood {sent}")
        sent += 1
    assert world.closed == [alice.connection_id]
    # The counter reaches the flood line at most one batch of remembered refusals late.
    assert LIMIT * ABUSE_FACTOR < sent <= LIMIT * ABUSE_FACTOR + LIMIT


JOINS, JOINS_BATCH = 100, 10


@pytest.fixture
def joins_room(world):
    world.use_limits(chat=LIMIT, signals=120, window_seconds=WINDOW_S, chat_batch=BATCH, signals_batch=11,
                     joins=JOINS, joins_batch=JOINS_BATCH)
    clients = alice_and_bob_in_lobby(world)
    world.clock.advance(WINDOW_S * 1000 - world.clock() % (WINDOW_S * 1000))  # the start of a window
    return clients


def test_a_reconnect_from_three_tabs_rejoins_30_rooms_but_a_join_leave_loop_is_refused(world, joins_room):
    """A join is several writes and reads, and tells the room: a client looping on join_room and
    leave_room is limited by an allowance of its own, sized so that a real reconnect is never refused."""
    alice, bob = joins_room
    tabs = [alice] + [world.connect("alice") for _ in range(2)]
    before = writes(world)
    for tab in tabs:  # each tab rejoins every room it was in, all at once
        replies = [tab.send("join_room", {"roomId": f"room{n}"}) for n in range(30)]
        assert [r["type"] for r in replies] == ["chat_history"] * 30
    assert writes(world) - before == 9 and counter(world, "joins") == 90  # in batches of 10, then every frame near the limit
    # Refused before any I/O, so spending nothing: bad input, and a room the token does not grant.
    assert alice.send("join_room", {"roomId": "bad room"})["data"]["code"] == "validation_error"
    assert alice.send("join_room", {"roomId": "dm:bob:carol"})["data"]["code"] == "forbidden"
    assert counter(world, "joins") == 90
    # A loop: joins and leaves both count, a leave of a room one is not in too (its delete is a write).
    assert alice.send("leave_room", {"roomId": "nowhere"}) is None
    for n in range(4):
        assert alice.send("join_room", {"roomId": "loop"})["type"] == "chat_history"
        assert alice.send("leave_room", {"roomId": "loop"}) is None
    assert alice.send("join_room", {"roomId": "loop"})["type"] == "chat_history"  # the 100th
    bob.take()
    refused = alice.send("join_room", {"roomId": "lobby2"})["data"]
    assert (refused["code"], refused["requestType"]) == ("rate_limited", "join_room") and 0 < refused["retryAfterMs"] <= WINDOW_S * 1000
    assert "join" in refused["message"]
    assert "lobby2" not in {i["roomId"]["S"] for i in world.items("MembershipsTable")}  # nothing written
    assert bob.take() == []
    # The other allowances are apart, and the next window has the whole allowance again.
    assert chat(alice) == "chat_update"
    world.clock.advance(WINDOW_S * 1000)
    assert alice.send("join_room", {"roomId": "lobby2"})["type"] == "chat_history"


def test_a_join_leave_flood_closes_the_connection(world, joins_room):
    alice, _ = joins_room
    sent = 0
    while not world.closed and sent < 2 * JOINS * ABUSE_FACTOR:
        alice.send("join_room" if sent % 2 == 0 else "leave_room", {"roomId": "loop"})
        sent += 1
    assert world.closed == [alice.connection_id]
    assert JOINS * ABUSE_FACTOR < sent <= JOINS * ABUSE_FACTOR + JOINS


def rooms_of(world, client) -> set[str]:
    return {i["roomId"]["S"] for i in world.items("MembershipsTable") if i["memberKey"]["S"] == f"c#{client.connection_id}"}


def test_a_leave_over_the_joins_allowance_is_performed_and_announced_and_a_join_still_refused(world, joins_room):
    """A refused leave_room left the user in the room (others never heard user_left, its frames kept
    coming) unless the client sent it again: a leave is counted, but never refused. Over the
    allowance, the first leave is counted on the shared counter, the next from the environment's
    memory; both leave. A join over it is still refused and changes nothing."""
    alice, bob = joins_room
    carol = world.connect("carol")
    carol.send("join_room", {"roomId": "side"})
    alice.send("join_room", {"roomId": "side"})
    for n in range(JOINS - 1):
        assert alice.send("join_room", {"roomId": f"r{n}"})["type"] == "chat_history"
    assert counter(world, "joins") == JOINS
    bob.take(), carol.take()
    assert alice.send("leave_room", {"roomId": "lobby"}) is None  # the 101st: the counter says over
    assert counter(world, "joins") == JOINS + 1
    assert alice.send("leave_room", {"roomId": "side"}) is None  # known over: counted from memory
    assert not {"lobby", "side"} & rooms_of(world, alice)
    assert [f["data"]["userId"] for f in bob.take() if f["type"] == "user_left"] == ["alice"]
    assert [f["data"]["userId"] for f in carol.take() if f["type"] == "user_left"] == ["alice"]
    refused = alice.send("join_room", {"roomId": "lobby"})["data"]
    assert refused["code"] == "rate_limited" and "lobby" not in rooms_of(world, alice)
    assert bob.take() == []


def test_a_leave_loop_gets_no_refusal_and_is_closed_as_a_flood(world, joins_room):
    """Leaves are never answered rate_limited, but count toward the flood close as any frame."""
    alice, _ = joins_room
    sent, replies = 0, []
    while not world.closed and sent < 2 * JOINS * ABUSE_FACTOR:
        replies.append(alice.send("leave_room", {"roomId": "nowhere"}))
        sent += 1
    assert world.closed == [alice.connection_id]
    assert JOINS * ABUSE_FACTOR < sent <= JOINS * ABUSE_FACTOR + JOINS
    assert replies == [None] * sent
