"""What only the real functions can show: each route's function reaches the rules, the route
response and the `@connections` posts go where API Gateway sends them, the environment's
over-limit memory and DeleteConnection are wired, and a failure inside becomes `internal_error`.
The rules themselves are tested in tests/domain."""

from __future__ import annotations

import json

import boto3
import pytest

from parley.core.rate_limits import OverLimitMemory
from parley_testing.chat_world import alice_and_bob_in_lobby


@pytest.fixture
def room(world):
    return alice_and_bob_in_lobby(world)


def test_every_route_function_serves_its_type(world, room):
    alice, bob = room
    assert alice.send("ping")["type"] == "pong"
    assert alice.send("message", {"message": 1})["type"] == "message_response"
    assert alice.send("chat_message", {"roomId": "lobby", "message": "hi"})["data"]["deliveredTo"] == 1
    seen = bob.take()[0]["data"]["messageId"]
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True}) is None
    assert bob.send("mark_read", {"roomId": "lobby", "messageId": seen}) is None
    assert [f["type"] for f in bob.take()] == ["typing_update"]
    assert [f["type"] for f in alice.take() if f["type"] != "message_received"] == ["pong", "message_response", "chat_update", "chat_update"]
    assert [m["message"] for m in alice.send("get_history", {"roomId": "lobby"})["data"]["messages"]] == ["seed", "hi"]
    assert alice.send(raw='{"type":"dance"}')["data"]["code"] == "unknown_type"  # the $default function
    assert bob.send("leave_room", {"roomId": "lobby"}) is None
    assert [f["type"] for f in alice.take()] == ["chat_history", "error", "user_left"]


def test_internal_error_is_reported_without_a_stack_trace(world, room):
    alice, bob = room
    boto3.client("dynamodb").delete_table(TableName="test-MessagesTable")
    alice.send("chat_message", {"roomId": "lobby", "message": "into the void", "clientMessageId": "x1"})
    (frame,) = alice.take()
    assert frame["data"]["code"] == "internal_error"
    assert frame["data"]["clientMessageId"] == "x1"
    assert "Traceback" not in json.dumps(frame) and "ResourceNotFound" not in json.dumps(frame)
    assert "request id" in frame["data"]["message"]
    assert bob.take() == []


def test_a_flood_closes_the_connection_with_delete_connection(world, room):
    alice, bob = room
    world.use_limits(chat=3, signals=2, window_seconds=60)
    for n in range(3 * 10):
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {n}"})
    assert world.closed == []
    alice.send("chat_message", {"roomId": "lobby", "message": "one more"})
    assert world.closed == [alice.connection_id]


def test_each_execution_environment_remembers_its_own_refusals(world, room, monkeypatch):
    import parley.aws.lambda_routes as routes

    alice, bob = room
    world.use_limits(chat=3, signals=2, window_seconds=60)
    environments = [OverLimitMemory(), OverLimitMemory()]
    sent = 0
    while not world.closed and sent < 60:
        monkeypatch.setattr(routes, "_over_limit", environments[sent % 2])
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {sent}"})
        sent += 1
    assert world.closed == [alice.connection_id]
    assert 31 <= sent <= 31 + 2 * (3 - 1), sent
