"""Fault injection at the handler level (issue 5, section 5): DynamoDB throttling, `@connections`
429/500/timeouts, a crash in the middle of a broadcast, and a `$disconnect` that never runs.

In every case: no accepted message is lost, delivery is retried or the failure is reported to
the sender, failures are logged with their request id, and rooms stay correct.
"""

from __future__ import annotations

import re
import time

import pytest

from parley_testing.handler_faults import send, the_sender

REQUEST_ID = re.compile(r"request id (\S+?)\.? when")


def room_of(world, *users, room="lobby"):
    clients = []
    for user in users:
        client = world.connect(user)
        client.send("join_room", {"roomId": room})
        clients.append(client)
    world.collect()
    for client in clients:
        client.take()
    return clients


def received(client, *, cmid=None, text=None):
    return [
        f["data"] for f in client.take()
        if f["type"] == "message_received"
        and (cmid is None or f["data"].get("clientMessageId") == cmid)
        and (text is None or f["data"]["message"] == text)
    ]


def stored(world, **match):
    items = [
        {k: next(iter(v.values())) for k, v in item.items()} for item in world.items("MessagesTable")
    ]
    return [i for i in items if all(i.get(k) == v for k, v in match.items())]


def data_items(world):
    """Everything but the rate counters, which a failed request may legitimately have spent."""
    snapshot = world.snapshot()
    snapshot["IdempotencyTable"] = [i for i in snapshot["IdempotencyTable"] if not i["key"]["S"].startswith("rate#")]
    return snapshot


# ---- (a) DynamoDB throttling ---------------------------------------------------------------

CHAT_CALLS = [
    ("GetItem", "MembershipsTable"),  # the membership check
    ("UpdateItem", "IdempotencyTable"),  # rate counter (on the frames that write it: all of them here)
    ("PutItem", "IdempotencyTable"),  # clientMessageId claim
    ("PutItem", "MessagesTable"),  # the message
    ("Query", "MembershipsTable"),  # the fan-out list, read once the message is stored
]


def count_every_frame(world):
    """Counter batches of 1: every chat_message writes the rate counter, so every call above is made."""
    world.use_limits(chat=30, signals=120, window_seconds=10, chat_batch=1, signals_batch=1)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_transient_throttle_is_absorbed(world, throttle, code):
    count_every_frame(world)
    alice, bob = room_of(world, "alice", "bob")
    for operation, table in CHAT_CALLS:
        throttle.add(operation, table, times=2, code=code)  # 2 < PynamoDB's 3 retries
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "through the storm", "clientMessageId": "t-1"})
    assert delivery.reply["type"] == "chat_update" and delivery.reply["data"]["deliveredTo"] == 1
    assert [m["message"] for m in received(bob)] == ["through the storm"]
    assert len(stored(world, clientMessageId="t-1")) == 1
    assert sum(throttle.injected.values()) == 2 * len(CHAT_CALLS), throttle.injected  # every one was hit, and retried
    assert len(throttle.retry_delays) == 2 * len(CHAT_CALLS)


def _persistent_throttle_case(world, throttle, logs, operation, table, code):
    count_every_frame(world)
    alice, bob = room_of(world, "alice", "bob")
    before = data_items(world)
    throttle.add(operation, table, times=None, code=code)
    cmid = f"p-{operation}-{table}"
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "held back", "clientMessageId": cmid})
    frames = alice.take()
    assert [f["type"] for f in frames] == ["error"], frames  # exactly one frame: the error
    error = frames[0]["data"]
    assert error["code"] == "internal_error" and error["clientMessageId"] == cmid
    assert REQUEST_ID.search(error["message"]).group(1) == delivery.request_id
    assert bob.take() == []
    assert throttle.injected[(operation, table)] == 4  # the first try and PynamoDB's 3 retries
    # Logged, at ERROR, with the request id as correlation id, and the throttle named.
    (line,) = [line for line in logs.for_request(delivery.request_id, min_level="ERROR")]
    assert line["message"] == "request failed" and code in line.get("exception", "")
    # Nothing the room can see was written.
    assert stored(world, clientMessageId=cmid) == []
    assert data_items(world)["MessagesTable"] == before["MessagesTable"]

    # The throttle passes; the client retries with the same clientMessageId: stored and delivered exactly once.
    throttle.clear()
    retry = send(world, alice, "chat_message", {"roomId": "lobby", "message": "held back", "clientMessageId": cmid})
    assert retry.reply["type"] in ("chat_update", "message_received")
    mine = received(alice, cmid=cmid)
    assert len(mine) == 1 and not [f for f in alice.take() if f["type"] == "error"]
    assert [m["messageId"] for m in received(bob, cmid=cmid)] == [mine[0]["messageId"]], "bob never got the message live"
    assert len(stored(world, clientMessageId=cmid)) == 1
    # A second retry stores nothing more; the room hears the same message again (the server cannot
    # tell a retry whose first attempt told nobody), which clients drop by its messageId.
    send(world, alice, "chat_message", {"roomId": "lobby", "message": "held back", "clientMessageId": cmid})
    assert len(stored(world, clientMessageId=cmid)) == 1
    assert [m["messageId"] for m in received(bob)] == [mine[0]["messageId"]]


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
@pytest.mark.parametrize("operation,table", CHAT_CALLS[:3])
def test_a_persistent_throttle_reports_internal_error_and_a_retry_succeeds_once(world, throttle, logs, operation, table, code):
    _persistent_throttle_case(world, throttle, logs, operation, table, code)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_persistent_throttle_on_the_message_put_then_retry_reaches_everyone(world, throttle, logs, code):
    _persistent_throttle_case(world, throttle, logs, "PutItem", "MessagesTable", code)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_persistent_throttle_on_the_fanout_query_keeps_the_message_and_the_retry_tells_the_room(world, throttle, logs, code):
    """The message is stored before its audience is read: a failed read leaves it in the history
    (a join reads it), and the sender's retry, a duplicate, tells the room."""
    count_every_frame(world)
    alice, bob = room_of(world, "alice", "bob")
    throttle.add("Query", "MembershipsTable", times=None, code=code)
    cmid = "p-fanout"
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "held back", "clientMessageId": cmid})
    (frame,) = alice.take()
    assert frame["type"] == "error" and frame["data"]["code"] == "internal_error" and frame["data"]["clientMessageId"] == cmid
    assert logs.for_request(delivery.request_id, min_level="ERROR")
    assert bob.take() == []
    (kept,) = stored(world, clientMessageId=cmid)
    throttle.clear()
    retry = send(world, alice, "chat_message", {"roomId": "lobby", "message": "held back", "clientMessageId": cmid})
    assert retry.reply == {"type": "message_received", "data": received_shape(kept)}
    assert [m["messageId"] for m in received(bob, cmid=cmid)] == [kept["messageId"]]
    assert [m["messageId"] for m in received(alice)] == [kept["messageId"]]  # once: the route response
    assert len(stored(world, clientMessageId=cmid)) == 1


def received_shape(row):
    shape = {k: row[k] for k in ("messageId", "roomId", "userId", "name", "message", "timestamp", "clientMessageId")}
    return {**shape, "version": int(row["version"])}  # stored as a number, a JSON number on the wire


def test_a_persistent_throttle_on_a_read_reports_internal_error(world, throttle, logs):
    alice, bob = room_of(world, "alice", "bob")
    before = world.snapshot()
    throttle.add("Query", "MessagesTable", times=None, code="ThrottlingException")
    delivery = send(world, alice, "get_history", {"roomId": "lobby"})
    (frame,) = alice.take()
    assert frame["data"]["code"] == "internal_error" and frame["data"]["requestType"] == "get_history"
    assert delivery.request_id in frame["data"]["message"]
    assert logs.for_request(delivery.request_id, min_level="ERROR")
    assert world.snapshot() == before and bob.take() == []


# ---- (b) @connections 429, 500, timeouts --------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "500", "timeout"])
def test_connections_failures_are_retried_until_delivered(world, connection_faults, kind):
    alice, bob, carol, dave = room_of(world, "alice", "bob", "carol", "dave")
    attempts = the_sender()._max_attempts
    connection_faults.fail(bob.connection_id, kind, attempts - 1)  # succeeds on the last attempt
    connection_faults.fail(carol.connection_id, kind, 1)
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "persist"})
    assert delivery.reply["data"]["deliveredTo"] == 3
    for client in (alice, bob, carol, dave):
        assert [m["message"] for m in received(client)] == ["persist"], client.user_id  # exactly once
    assert connection_faults.attempts[bob.connection_id] == attempts
    assert connection_faults.attempts[carol.connection_id] == 2
    assert connection_faults.attempts[dave.connection_id] == 1
    assert len(connection_faults.sleeps) == attempts, "each retry waits first (backoff)"
    base, cap = the_sender()._backoff_base, the_sender()._backoff_cap
    assert max(connection_faults.sleeps) <= min(cap, base * 2 ** (attempts - 2))


@pytest.mark.parametrize("kind", ["429", "500", "timeout"])
def test_a_permanent_connections_failure_is_not_counted_and_keeps_the_room(world, connection_faults, kind):
    alice, bob, carol = room_of(world, "alice", "bob", "carol")
    connection_faults.fail(bob.connection_id, kind, None)
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "partial"})
    assert delivery.reply["type"] == "chat_update" and delivery.reply["data"]["deliveredTo"] == 1  # carol only
    assert received(bob) == [] and [m["message"] for m in received(carol)] == ["partial"]
    assert connection_faults.attempts[bob.connection_id] == the_sender()._max_attempts
    # A failing connection is not a gone one: bob stays in the room, and the message is in history for him.
    assert carol.take() == [] and [f["type"] for f in alice.take()] == ["message_received", "chat_update"]  # no user_left
    assert len([i for i in world.items("MembershipsTable") if i["memberKey"]["S"] == "c#" + bob.connection_id]) == 1
    connection_faults.heal()
    bob.send("get_history", {"roomId": "lobby"})
    assert [m["message"] for m in bob.take()[0]["data"]["messages"]] == ["partial"]


def test_a_permanent_connections_failure_is_logged_with_the_request_id(world, connection_faults, logs):
    alice, bob = room_of(world, "alice", "bob")
    connection_faults.fail(bob.connection_id, "500", None)
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "lost to bob"})
    assert delivery.reply["data"]["deliveredTo"] == 0
    lines = logs.for_request(delivery.request_id)
    assert any(bob.connection_id in str(line) for line in lines), lines


# ---- (c) a crash in the middle of a broadcast ---------------------------------------------


def test_a_crash_mid_broadcast_keeps_the_message_and_a_retry_stores_no_duplicate(world, monkeypatch, logs):
    alice, bob, carol, dave = room_of(world, "alice", "bob", "carol", "dave")
    seed = alice.send("chat_message", {"roomId": "lobby", "message": "seed"})["data"]["messageId"]
    world.collect()
    for client in (alice, bob, carol, dave):
        client.take()
    sender = the_sender()
    original_send = type(sender).send
    reached: list[str] = []

    def crashing_send(self, job):
        if b'"type":"message_received"' not in job.payload:
            return original_send(self, job)
        half = job.connection_ids[: len(job.connection_ids) // 2]
        reached.extend(half)
        original_send(self, type(job)(job.payload, half))
        raise RuntimeError("the function died half way through the fan-out")

    monkeypatch.setattr(sender, "send", crashing_send.__get__(sender))
    delivery = send(world, alice, "chat_message", {"roomId": "lobby", "message": "half way", "clientMessageId": "h-1"})
    assert len(reached) == 2
    sender_frames = alice.take()
    errors = [f for f in sender_frames if f["type"] == "error"]
    assert len(errors) == 1 and errors[0]["data"]["code"] == "internal_error" and errors[0]["data"]["clientMessageId"] == "h-1"
    assert delivery.request_id in errors[0]["data"]["message"]
    assert logs.for_request(delivery.request_id, min_level="ERROR"), "the crash is logged with the request id"
    (message,) = stored(world, clientMessageId="h-1")  # the accepted message is stored
    missed = [c for c in (bob, carol, dave) if c.connection_id not in reached]
    assert missed
    for client in missed:
        assert received(client) == []
        # A reconnecting client joins with `since` = the last messageId it saw, and gets it.
        client.send("join_room", {"roomId": "lobby", "since": seed})
        history = [f for f in client.take() if f["type"] == "chat_history"]
        assert [m["messageId"] for m in history[0]["data"]["messages"]] == [message["messageId"]]

    monkeypatch.setattr(sender, "send", original_send.__get__(sender))
    retry = send(world, alice, "chat_message", {"roomId": "lobby", "message": "half way", "clientMessageId": "h-1"})
    assert retry.reply["type"] == "message_received" and retry.reply["data"]["messageId"] == message["messageId"]
    assert len(stored(world, clientMessageId="h-1")) == 1
    assert len(world.items("MessagesTable")) == 2  # seed + the one message


# ---- (d) a $disconnect that never runs ----------------------------------------------------


def test_a_gone_connection_without_disconnect_is_cleaned_up_by_the_next_broadcast(world):
    alice, bob, carol = room_of(world, "alice", "bob", "carol")
    carol.send("join_room", {"roomId": "annex"})
    alice.send("join_room", {"roomId": "annex"})
    world.collect()
    for client in (alice, bob, carol):
        client.take()
    world.gone.add(carol.connection_id)  # the socket died; $disconnect never ran
    reply = alice.send("chat_message", {"roomId": "lobby", "message": "anyone there?"})
    assert reply["data"]["deliveredTo"] == 1  # bob; carol is not counted
    memberships = [i for i in world.items("MembershipsTable") if i.get("connectionId", {}).get("S") == carol.connection_id]
    assert memberships == [], "carol's memberships (in every room) are removed"
    bob_frames = bob.take()
    assert [f["type"] for f in bob_frames] == ["message_received", "user_left"]
    assert bob_frames[1]["data"]["userId"] == "carol" and bob_frames[1]["data"]["roomId"] == "lobby"
    left = sorted(f["data"]["roomId"] for f in alice.take() if f["type"] == "user_left")
    assert left == ["annex", "lobby"]  # the other room learns it too
    # The rooms are right afterwards.
    dave = world.connect("dave")
    dave.send("join_room", {"roomId": "lobby"})
    assert [p["userId"] for p in dave.take()[0]["data"]["participants"]] == ["alice", "bob", "dave"]


def test_memberships_expire_by_ttl(world):
    started = time.time()
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "lobby"})
    ttl = 2 * 3600 + 5 * 60
    membership = [i for i in world.items("MembershipsTable") if i["memberKey"]["S"] == "c#" + alice.connection_id]
    for item in membership:
        expires = int(item["expiresAt"]["N"])
        assert started + ttl - 5 <= expires <= time.time() + ttl + 5, item
    assert len(membership) == 1
