"""The cost design, asserted: DynamoDB calls and frames per request do not grow with anything
but the room, and fan-out plus the membership check is one Query."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from parley_testing.lambda_events import disconnect_event


@pytest.fixture(autouse=True)
def one_rate_window(monkeypatch):
    """Every test here counts the rate counter's writes, which come every batch-th frame of a window: a
    window ending mid-test (one in 10 s by default) would start the batch again and move a write."""
    import parley.aws.lambda_routes as adapter

    monkeypatch.setattr(adapter, "settings", dataclasses.replace(adapter.settings, rate_window_seconds=3600))


def dynamodb_ops(world):
    ops = Counter(op.split(":", 1)[1] for op in world.operations if op.startswith("dynamodb:"))
    world.operations.clear()
    world.requests.clear()
    return ops


def reads(world) -> list[tuple[str, str, bool]]:
    """The reads since the last look: (operation, table, ConsistentRead) in order."""
    found = [(op, params["TableName"], bool(params.get("ConsistentRead"))) for op, params in world.requests
             if op in ("GetItem", "Query")]
    return found


def test_chat_message_costs_one_query_and_one_put_and_every_kth_one_rate_update(world):
    import parley.aws.lambda_routes as adapter

    batch = adapter.settings.chat_rate_batch
    assert batch == 5  # the template's ChatRateBatch default, read from CHAT_RATE_BATCH's default
    clients = []
    for n in range(12):
        c = world.connect(f"user{n}")
        c.send("join_room", {"roomId": "costly" if n < 8 else "elsewhere"})
        clients.append(c)
    dynamodb_ops(world)  # forget what came before
    posts_before = world.posts
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi"})
    # GetItem: the sender's membership; PutItem: the message; Query: the members, read after the
    # message is written (a join in between reads the message in its history). A sender below the
    # batch size in this window causes no rate counter write (the environment's ledger holds the
    # count). Nothing else: get_rooms reads the room's newest message from history when asked for.
    assert [op for op, _, _ in reads(world)] == ["GetItem", "Query"]
    assert [consistent for _, _, consistent in reads(world)] == [True, True]
    assert world.operations.index("dynamodb:PutItem") < world.operations.index("dynamodb:Query")
    # The message's put is conditional (a message is never written over: another attempt of the same
    # clientMessageId may have stored it, and the room changed it, a moment earlier), in the same one
    # PutItem: the condition on a new id costs no call and no unit.
    [put] = [params for op, params in world.requests if op == "PutItem"]
    assert put["TableName"] == "test-MessagesTable" and "attribute_not_exists" in put["ConditionExpression"]
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1, "PutItem": 1})
    assert world.posts - posts_before == 8  # one per member, the sender's own included; chat_update is the route response
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi", "clientMessageId": "k1"})
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1, "PutItem": 2})
    for n in range(batch - 4):
        clients[0].send("chat_message", {"roomId": "costly", "message": f"more {n}"})
        assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1, "PutItem": 1})
    # A duplicate (a retry of k1, which is stored): the claim and the conditional put both fail, and the
    # message is read as it stands for the room's echo: two GetItems and two failed PutItems more, on
    # a rare path.
    clients[0].send("chat_message", {"roomId": "costly", "message": "hi", "clientMessageId": "k1"})
    assert dynamodb_ops(world) == Counter({"GetItem": 3, "Query": 1, "PutItem": 2})
    # The k-th frame adds the batch to the rate counter: one UpdateItem more, sent with the GetItem.
    clients[0].send("chat_message", {"roomId": "costly", "message": "kth"})
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1, "UpdateItem": 1, "PutItem": 1})
    counters = [int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#chat#user0#")]
    assert counters == [batch]


def test_typing_and_ping_costs(world):
    a = world.connect("a")
    a.send("join_room", {"roomId": "r"})
    dynamodb_ops(world)  # forget what came before
    a.send("ping")
    assert dynamodb_ops(world) == Counter()
    a.send("typing", {"roomId": "r", "isTyping": True})
    # Signals and get_history read eventually (half the read units): only a change's audience and a
    # join's history page must be strongly consistent.
    assert reads(world) == [("Query", "test-MembershipsTable", False)]
    assert dynamodb_ops(world) == Counter({"Query": 1})  # the signals counter: every SIGNAL_RATE_BATCH-th frame
    a.send("get_history", {"roomId": "r"})
    assert reads(world) == [("GetItem", "test-MembershipsTable", True), ("Query", "test-MessagesTable", False)]
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1})
    # A catch-up page (`since`) reads as the join it continues: strongly consistent, and nothing else
    # (another join_room also wrote the membership and read the participants and the read cursor).
    a.send("get_history", {"roomId": "r", "since": "01H0000000000000000000000A"})
    assert reads(world) == [("GetItem", "test-MembershipsTable", True), ("Query", "test-MessagesTable", True)]
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "Query": 1})


def test_a_flood_costs_no_query_and_one_counter_write_per_allowance_of_refusals(world, monkeypatch):
    import parley.aws.lambda_routes as adapter

    monkeypatch.setattr(adapter, "settings", dataclasses.replace(adapter.settings, chat_rate_limit=5, rate_window_seconds=600))
    flooder = world.connect("flooder")
    flooder.send("join_room", {"roomId": "big"})
    for n in range(20):
        world.connect(f"member{n}").send("join_room", {"roomId": "big"})
    for n in range(5):
        assert flooder.send("chat_message", {"roomId": "big", "message": f"ok {n}"})["type"] == "chat_update"
    dynamodb_ops(world)  # forget what came before
    # The first refusal takes the full checks: the membership's GetItem and the counter.
    assert flooder.send("chat_message", {"roomId": "big", "message": "over"})["data"]["code"] == "rate_limited"
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "UpdateItem": 1})
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
    dynamodb_ops(world)  # forget what came before
    # A refused action is decided from the token: no DynamoDB call at all.
    assert a.send("chat_message", {"roomId": "elsewhere", "message": "no"})["data"]["code"] == "forbidden"
    assert dynamodb_ops(world) == Counter()
    # GetItem: the caller's membership; UpdateItem: the message (conditional), and the rate counter
    # at every CHAT_RATE_BATCH-th frame (none here: a and b are below it); Query: the members, read
    # after the change. Edits, reactions and deletes alike: the rooms list reads the newest message
    # as it stands, so nothing else is written.
    changed = Counter({"GetItem": 1, "UpdateItem": 1, "Query": 1})
    a.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "hello"})
    assert dynamodb_ops(world) == changed
    a.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    assert dynamodb_ops(world) == changed
    # A refused change is explained by the item the failed write returns, and has no audience to read.
    assert b.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "x"})["data"]["code"] == "forbidden"
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "UpdateItem": 1})
    a.send("delete_message", {"roomId": "lobby", "messageId": message_id})
    assert dynamodb_ops(world) == changed
    # Join: membership PutItem (conditional), participant UpdateItem and, for the user's first
    # connection, room size UpdateItem; the participants page Query; the members Query for
    # user_joined (a room below the presence threshold only); history Query; the reader item
    # UpdateItem (which returns the read cursor); the unread COUNT Query only when the cursor is
    # outside the page.
    c = world.connect("c")
    dynamodb_ops(world)  # forget what came before
    c.send("join_room", {"roomId": "lobby"})
    # The history is read after the membership is written, and strongly (a message written
    # before the join's membership has either reached c live or is in this page).
    history = [consistent for op, table, consistent in reads(world) if table.endswith("MessagesTable")]
    assert history == [True]
    assert dynamodb_ops(world) == Counter({"Query": 3, "PutItem": 1, "UpdateItem": 3})
    # get_rooms: the reader index Query, one newest-message Query per room (Limit 1), and one COUNT
    # Query per listed room with messages after the user's read cursor (c has read nothing); the
    # signals counter at every SIGNAL_RATE_BATCH-th frame only.
    c.send("get_rooms")
    assert dynamodb_ops(world) == Counter({"Query": 3})
    c.send("mark_read", {"roomId": "lobby", "messageId": message_id})
    dynamodb_ops(world)  # forget what came before
    c.send("get_rooms")
    assert dynamodb_ops(world) == Counter({"Query": 2})


def test_joins_and_leaves_write_the_joins_counter_every_kth_frame_first(world):
    """The counter's UpdateItem goes before the membership write (a refused join writes nothing), on
    the JOIN_RATE_BATCH-th frame only: the other joins and leaves cost what they did."""
    import parley.aws.lambda_routes as adapter

    batch = adapter.settings.join_rate_batch
    assert batch == 10  # the template's JoinRateBatch default, read from JOIN_RATE_BATCH's default
    a = world.connect("a")
    dynamodb_ops(world)
    tables = []  # per frame: the tables its calls went to, in order
    for n in range(batch // 2):
        for type_name in ("join_room", "leave_room"):
            a.send(type_name, {"roomId": f"r{n}"})
            tables.append([params["TableName"] for _, params in world.requests])
            dynamodb_ops(world)
    assert not any("test-IdempotencyTable" in called for called in tables[:-1])
    # The k-th frame (a last leave: membership and participant DeleteItems, room size UpdateItem) adds
    # the batch to the counter first, and nothing else.
    assert tables[-1] == ["test-IdempotencyTable"] + tables[-3]
    counters = [int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#joins#a#")]
    assert counters == [batch]


def _large_rooms(world, monkeypatch, threshold: int = 2) -> None:
    """Rooms of `threshold` participants or more hear departures as presence_update (a `p#` PutItem)."""
    import dataclasses

    import parley.aws.lambda_routes as routes

    monkeypatch.setattr(routes, "settings", dataclasses.replace(routes.settings, presence_threshold=threshold))


def test_a_leave_is_three_calls_and_a_room_below_the_threshold_one_query_more(world):
    """A user's last connection: the membership's and the participant's conditional DeleteItems and
    the room size's UpdateItem; another of theirs still in: the participant delete fails, ADD -1."""
    a, b = world.connect("a"), world.connect("b")
    a2 = world.connect("a")
    for client in (a, b, a2):
        client.send("join_room", {"roomId": "lobby"})
    world.collect()
    dynamodb_ops(world)  # forget what came before
    a2.send("leave_room", {"roomId": "lobby"})
    assert dynamodb_ops(world) == Counter({"DeleteItem": 2, "UpdateItem": 1})  # no room-size read: nobody hears of it
    a.send("leave_room", {"roomId": "lobby"})
    assert dynamodb_ops(world) == Counter({"DeleteItem": 2, "UpdateItem": 1, "Query": 1})  # Query: the members, for user_left
    world.collect()
    assert [f["data"]["userId"] for f in b.take() if f["type"] == "user_left"] == ["a"]
    a.send("leave_room", {"roomId": "lobby"})  # again (a retry): the membership delete finds nothing
    assert dynamodb_ops(world) == Counter({"DeleteItem": 1})


def test_a_disconnect_from_a_large_room_is_five_calls_and_from_no_room_one(world, monkeypatch):
    _large_rooms(world, monkeypatch)
    a, b = world.connect("a"), world.connect("b")
    for client in (a, b):
        client.send("join_room", {"roomId": "hall"})
    idle = world.connect("idle")
    world.collect()
    dynamodb_ops(world)  # forget what came before
    # Query ByConnection; DeleteItem membership and participant (answering the name); UpdateItem
    # room size; PutItem the `p#` record the presence function announces (was 7: ADD -1 on the
    # participant, then its delete; and a DeleteItem of the connection item no longer kept).
    world.disconnect(b)
    assert dynamodb_ops(world) == Counter({"Query": 1, "DeleteItem": 2, "UpdateItem": 1, "PutItem": 1})
    presence = [i for i in world.items("MembershipsTable") if i["memberKey"]["S"].startswith("p#")]
    assert [(i["userId"]["S"], i["change"]["S"]) for i in presence] == [("b", "joined"), ("b", "left")]  # a: user_joined
    world.disconnect(idle)
    assert dynamodb_ops(world) == Counter({"Query": 1})  # its rooms: none; nothing to write


def _shard_to(world, room: str, *clients) -> None:
    """The fan-out function given one shard naming `clients`, as a broadcast cut it before they left."""
    from parley.core.ids import new_ulid
    from parley.core.model import ShardJob

    job = ShardJob(room, new_ulid(world.now_ms()), 0, '{"type":"presence_update","data":{}}',
                   tuple((c.connection_id, c.user_id) for c in clients))
    world.invoke("fanout", job.to_event())
    world.collect()


def _departures(world) -> list[tuple[str, str]]:
    return [(i["roomId"]["S"], i["userId"]["S"]) for i in world.items("MembershipsTable")
            if i["memberKey"]["S"].startswith("p#") and i["change"]["S"] == "left"]


def test_a_gone_connection_whose_disconnect_ran_costs_the_fanout_one_call(world, monkeypatch):
    _large_rooms(world, monkeypatch)
    a, b = world.connect("a"), world.connect("b")
    for client in (a, b):
        client.send("join_room", {"roomId": "hall"})
    world.disconnect(b)  # its $disconnect ran: b's rows are gone, and b's socket answers 410
    dynamodb_ops(world)  # forget what came before
    _shard_to(world, "hall", a, b)
    # UpdateItem: the shard's claims. DeleteItem: hall's membership, already gone, so the rest is
    # done: nothing more (was a Query ByConnection, that failed delete and the connection's DeleteItem).
    assert dynamodb_ops(world) == Counter({"UpdateItem": 1, "DeleteItem": 1})
    assert _departures(world) == [("hall", "b")]  # the one its $disconnect recorded


def test_a_gone_connection_found_before_its_disconnect_is_cleaned_up_by_the_fanout_once(world, monkeypatch):
    _large_rooms(world, monkeypatch)
    a, b = world.connect("a"), world.connect("b")
    for client in (a, b):
        client.send("join_room", {"roomId": "hall"})
    b.send("join_room", {"roomId": "annex"})  # b alone: a room below the threshold
    world.collect()
    world.gone.add(b.connection_id)  # the socket closed; $disconnect has not run (or never will)
    dynamodb_ops(world)  # forget what came before
    _shard_to(world, "hall", a, b)
    # UpdateItem: the claims. hall first: DeleteItem membership and participant, UpdateItem size,
    # PutItem `p#`. It removed b from hall, so it goes on: Query ByConnection; annex: two DeleteItems,
    # UpdateItem size, Query members (user_left, to nobody).
    assert dynamodb_ops(world) == Counter({"UpdateItem": 3, "DeleteItem": 4, "PutItem": 1, "Query": 2})
    assert not [i for i in world.items("MembershipsTable") if i.get("connectionId", {}).get("S") == b.connection_id]
    # Its $disconnect comes after: the index lists no room, so it writes nothing.
    world.invoke("disconnect", disconnect_event(b.connection_id, b.user_id))
    assert dynamodb_ops(world) == Counter({"Query": 1})
    assert _departures(world) == [("hall", "b")]  # recorded once


def test_a_shard_finding_many_connections_gone_after_their_disconnects_reads_once(world, monkeypatch):
    _large_rooms(world, monkeypatch)
    clients = [world.connect(f"user{n}") for n in range(8)]
    for client in clients:
        client.send("join_room", {"roomId": "hall"})
    for client in clients[2:]:
        world.disconnect(client)
    dynamodb_ops(world)  # forget what came before
    _shard_to(world, "hall", *clients)
    # UpdateItem: the claims; Query: which of the six gone are still members (none), consistent,
    # keys only. Was a Query ByConnection and two DeleteItems for each of the six: 18 calls.
    assert dynamodb_ops(world) == Counter({"UpdateItem": 1, "Query": 1})
    assert _departures(world) == [("hall", f"user{n}") for n in range(2, 8)]


def test_connect_costs_nothing(world):
    # `$connect` stores nothing: the authorizer let the connection in and API Gateway knows it is open.
    dynamodb_ops(world)  # forget what came before
    world.connect("a")
    assert dynamodb_ops(world) == Counter()


def test_a_rejoin_costs_one_query_of_the_change_index_more_and_a_change_no_call_more(world):
    """A join with `since` also reads the older messages changed since (PROTOCOL "Reconnecting"):
    one Query of the messages' ByChange index, eventually consistent (an index cannot read strongly),
    after the history page. A change writes its time in its own UpdateItem (and DynamoDB the index
    entry with it): no call more. A join without `since`, and get_history, do not read the index."""
    a, b = world.connect("a"), world.connect("b")
    for client in (a, b):
        client.send("join_room", {"roomId": "lobby"})
    message_id = a.send("chat_message", {"roomId": "lobby", "message": "hi"})["data"]["messageId"]
    a.send("mark_read", {"roomId": "lobby", "messageId": message_id})
    world.disconnect(a)
    dynamodb_ops(world)  # forget what came before
    b.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    assert dynamodb_ops(world) == Counter({"GetItem": 1, "UpdateItem": 1, "Query": 1})
    back = world.connect("a")
    history = back.send("join_room", {"roomId": "lobby", "since": message_id})["data"]
    assert [m["messageId"] for m in history["changed"]] == [message_id]
    indexed = [(op, params.get("IndexName"), bool(params.get("ConsistentRead"))) for op, params in world.requests
               if params.get("TableName") == "test-MessagesTable"]
    # The history page after `since` (strongly consistent, as a join's), then the index: one page of
    # at most 101 entries, those after `since` filtered out; in a quiet room it is the whole answer.
    assert indexed == [("Query", None, True), ("Query", "ByChange", False)]
    assert [(params["Limit"], "FilterExpression" in params) for _, params in world.requests
            if params.get("IndexName") == "ByChange"] == [(101, True)]
    # The same join as before (membership PutItem, participant and size UpdateItems, participants and
    # members Queries, history Query, reader UpdateItem; the cursor is inside the page: no COUNT)
    # and the one index Query.
    assert dynamodb_ops(world) == Counter({"Query": 4, "PutItem": 1, "UpdateItem": 3})
    world.connect("c").send("join_room", {"roomId": "lobby"})
    back.send("get_history", {"roomId": "lobby", "since": message_id})
    assert not [params for _, params in world.requests if params.get("IndexName") == "ByChange"]


def _rejoin_behind_changes(world, newer: int) -> tuple[tuple[list[str], bool], str, list[tuple[int, bool]]]:
    """b rejoins `lobby` from just after one old message that was changed while it was away,
    behind `newer` later changes to messages after its `since` (stored straight through the store:
    the allowances are not what this is about). Its (changed, moreChanged), the old message and the
    ByChange Queries it made: (Limit, filtered)."""
    from parley.core.ids import ulid_at
    from parley.core.model import ChatMessage
    from parley_testing.room_rules import store_of

    store, start = store_of(world), 1_800_000_000_000
    old = ChatMessage("lobby", ulid_at(start), "a", "A", "old", "2027-01-15T08:00:00.000Z")
    store.put_message(old)
    since = ulid_at(start + 1000)
    store.react("lobby", old.message_id, "a", "👍", remove=False, max_distinct=20, at_ms=start + 2000)
    for n in range(newer):
        message = ChatMessage("lobby", ulid_at(start + 3000 + n), "a", "A", f"new {n}", "2027-01-15T08:00:03.000Z")
        store.put_message(message)
        store.react("lobby", message.message_id, "a", "👍", remove=False, max_distinct=20, at_ms=start + 3000 + n)
    dynamodb_ops(world)  # forget what came before
    history = world.connect("b").send("join_room", {"roomId": "lobby", "since": since})["data"]
    found = [m["messageId"] for m in history["changed"]], history["moreChanged"]
    queries = [(params["Limit"], "FilterExpression" in params) for _, params in world.requests
               if params.get("IndexName") == "ByChange"]
    return found, old.message_id, queries


def test_a_rejoin_reads_past_changes_to_newer_messages_a_page_of_101_at_a_time_up_to_four(world):
    """Changes to messages after `since` are in the rejoin's page: the index read passes over them
    (a FilterExpression, which bills what the Limit read) and reads on from LastEvaluatedKey for the
    older ones, a page of 101 entries at a time, at most 4 pages (REJOIN_CHANGE_READS): 101 newer
    changes and an older one cost a second Query and find it, with `moreChanged` false."""
    (changed, more), old, queries = _rejoin_behind_changes(world, 101)
    assert (changed, more) == ([old], False)
    assert queries == [(101, True), (101, True)]


def test_a_rejoin_behind_404_newer_changes_stops_at_four_queries_and_says_there_may_be_more(world):
    (changed, more), old, queries = _rejoin_behind_changes(world, 404)
    assert (changed, more) == ([], True)
    assert queries == [(101, True)] * 4
