"""The cost design, asserted: DynamoDB calls and frames per request do not grow with anything
but the room, and fan-out plus the membership check is one Query."""

from __future__ import annotations

from collections import Counter


def dynamodb_ops(world):
    ops = Counter(op.split(":", 1)[1] for op in world.operations if op.startswith("dynamodb:"))
    world.operations.clear()
    return ops


def test_chat_message_costs_one_query_one_rate_update_and_one_put(world):
    clients = []
    for n in range(12):
        c = world.connect(f"user{n}")
        c.send("join_room", {"roomId": "costly" if n < 8 else "elsewhere"})
        clients.append(c)
    world.operations.clear()
    posts_before = world.posts
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi"})
    # Query: members (and the membership check); UpdateItem: the rate counter; PutItem: the message.
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1, "PutItem": 1})
    assert world.posts - posts_before == 8  # one per member, the sender's own included; chat_update is the route response
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi", "clientMessageId": "k1"})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1, "PutItem": 2})


def test_typing_and_ping_costs(world):
    a = world.connect("a")
    a.send("join_room", {"roomId": "r"})
    world.operations.clear()
    a.send("ping")
    assert dynamodb_ops(world) == Counter()
    a.send("typing", {"roomId": "r", "isTyping": True})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    a.send("get_history", {"roomId": "r"})
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1})
