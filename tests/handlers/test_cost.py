"""The cost design, asserted: DynamoDB calls and frames per request do not grow with anything
but the room, and fan-out plus the membership check is one Query."""

from __future__ import annotations

from collections import Counter


def dynamodb_ops(world):
    ops = Counter(op.split(":", 1)[1] for op in world.operations if op.startswith("dynamodb:"))
    world.operations.clear()
    return ops


def test_chat_message_costs_one_query_and_one_put_and_every_kth_one_rate_update(world):
    import parley.aws.lambda_routes as adapter

    batch = adapter.settings.chat_rate_batch
    assert batch == 5  # the template's ChatRateBatch default, read from CHAT_RATE_BATCH's default
    clients = []
    for n in range(12):
        c = world.connect(f"user{n}")
        c.send("join_room", {"roomId": "costly" if n < 8 else "elsewhere"})
        clients.append(c)
    world.operations.clear()
    posts_before = world.posts
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi"})
    # Query: members (and the membership check); PutItem: the message. A sender below the batch
    # size in this window causes no rate counter write (the environment's ledger holds the count).
    # Nothing else: get_rooms reads the room's newest message from history when it is asked for.
    assert dynamodb_ops(world) == Counter({"Query": 1, "PutItem": 1})
    assert world.posts - posts_before == 8  # one per member, the sender's own included; chat_update is the route response
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi", "clientMessageId": "k1"})
    assert dynamodb_ops(world) == Counter({"Query": 1, "PutItem": 2})
    for n in range(batch - 3):
        clients[0].send("chat_message", {"roomId": "costly", "message": f"more {n}"})
        assert dynamodb_ops(world) == Counter({"Query": 1, "PutItem": 1})
    # The k-th frame adds the batch to the rate counter: one UpdateItem more, sent with the Query.
    clients[0].send("chat_message", {"roomId": "costly", "message": "kth"})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1, "PutItem": 1})
    counters = [int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#chat#user0#")]
    assert counters == [batch]


def test_typing_and_ping_costs(world):
    a = world.connect("a")
    a.send("join_room", {"roomId": "r"})
    world.operations.clear()
    a.send("ping")
    assert dynamodb_ops(world) == Counter()
    a.send("typing", {"roomId": "r", "isTyping": True})
    assert dynamodb_ops(world) == Counter({"Query": 1})  # the signals counter: every SIGNAL_RATE_BATCH-th frame
    a.send("get_history", {"roomId": "r"})
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1})


def test_a_flood_costs_no_query_and_one_counter_write_per_allowance_of_refusals(world, monkeypatch):
    import dataclasses

    import parley.aws.lambda_routes as adapter

    monkeypatch.setattr(adapter, "settings", dataclasses.replace(adapter.settings, chat_rate_limit=5, rate_window_seconds=600))
    flooder = world.connect("flooder")
    flooder.send("join_room", {"roomId": "big"})
    for n in range(20):
        world.connect(f"member{n}").send("join_room", {"roomId": "big"})
    for n in range(5):
        assert flooder.send("chat_message", {"roomId": "big", "message": f"ok {n}"})["type"] == "chat_update"
    world.operations.clear()
    # The first refusal takes the full checks: the room's Query and the counter.
    assert flooder.send("chat_message", {"roomId": "big", "message": "over"})["data"]["code"] == "rate_limited"
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    posts_before = world.posts
    per_frame = []
    for n in range(10):
        assert flooder.send("chat_message", {"roomId": "big", "message": f"flood {n}"})["data"]["code"] == "rate_limited"
        per_frame.append(dynamodb_ops(world))
    # Then: nothing, except every 5th refusal adds the 5 to the shared counter in one UpdateItem.
    assert per_frame == [Counter()] * 4 + [Counter({"UpdateItem": 1})] + [Counter()] * 4 + [Counter({"UpdateItem": 1})]
    assert world.posts == posts_before  # refusals are route responses: no @connections call
    counters = [int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#chat#flooder#")]
    assert counters == [5 + 1 + 10]


def test_access_costs_nothing_a_refusal_nothing_and_the_new_requests_what_the_docs_say(world):
    """docs/ARCHITECTURE.md "Cost of each request" lists these; a change here changes the bill."""
    a = world.connect("a", rooms={"lobby": ["read", "write"], "*": ["read"]})
    b = world.connect("b")
    for client in (a, b):
        client.send("join_room", {"roomId": "lobby"})
    a.send("chat_message", {"roomId": "lobby", "message": "hi"})
    message_id = [f for f in a.take() if f["type"] == "chat_update"][0]["data"]["messageId"]
    world.operations.clear()
    # A refused action is decided from the token: no DynamoDB call at all.
    assert a.send("chat_message", {"roomId": "elsewhere", "message": "no"})["data"]["code"] == "forbidden"
    assert dynamodb_ops(world) == Counter()
    # Query: members; UpdateItem: the message (conditional), and the rate counter at every
    # CHAT_RATE_BATCH-th frame (none here: a and b are below it). Edits, reactions and deletes
    # alike: the rooms list reads the newest message as it stands, so nothing else is written.
    a.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "hello"})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    a.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    # A refused change is explained by the item the failed write returns: still no read.
    assert b.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "x"})["data"]["code"] == "forbidden"
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    a.send("delete_message", {"roomId": "lobby", "messageId": message_id})
    assert dynamodb_ops(world) == Counter({"Query": 1, "UpdateItem": 1})
    # Join: membership PutItem (conditional), participant UpdateItem and, for the user's first
    # connection, room size UpdateItem; the participants page Query; the members Query for
    # user_joined (a room below the presence threshold only); history Query; the reader item
    # UpdateItem (which returns the read cursor); the unread COUNT Query only when the cursor is
    # outside the page.
    c = world.connect("c")
    world.operations.clear()
    c.send("join_room", {"roomId": "lobby"})
    assert dynamodb_ops(world) == Counter({"Query": 3, "PutItem": 1, "UpdateItem": 3})
    # get_rooms: the reader index Query, one newest-message Query per room (Limit 1), and one COUNT
    # Query per listed room with messages after the user's read cursor (c has read nothing); the
    # signals counter at every SIGNAL_RATE_BATCH-th frame only.
    c.send("get_rooms")
    assert dynamodb_ops(world) == Counter({"Query": 3})
    c.send("mark_read", {"roomId": "lobby", "messageId": message_id})
    world.operations.clear()
    c.send("get_rooms")
    assert dynamodb_ops(world) == Counter({"Query": 2})
