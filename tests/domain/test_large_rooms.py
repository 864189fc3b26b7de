"""Large rooms: participants paged, presence coalesced above the threshold, joins that never read
the whole room. Small rooms keep user_joined/user_left exactly as before."""

from __future__ import annotations

import base64
import json

from parley_testing.chat_world import MemoryChatWorld, crowd


def test_participants_come_in_pages_of_at_most_100_with_the_room_count():
    world = MemoryChatWorld(presence_threshold=10_000)
    clients = crowd(world, 250)
    late = world.connect("zz-late")
    late.send("join_room", {"roomId": "hall"})
    first = late.take()[0]["data"]
    assert len(first["participants"]) == 100 and first["count"] == 251 and "nextCursor" in first
    seen = [p["userId"] for p in first["participants"]]
    cursor = first["nextCursor"]
    while cursor:
        page = late.send("get_participants", {"roomId": "hall", "cursor": cursor})["data"]
        assert len(page["participants"]) <= 100 and page["count"] == 251
        seen += [p["userId"] for p in page["participants"]]
        cursor = page.get("nextCursor")
    assert seen == sorted({c.user_id for c in clients} | {"zz-late"})  # each once, in userId order
    small = late.send("get_participants", {"roomId": "hall", "limit": 3})["data"]
    assert [p["userId"] for p in small["participants"]] == seen[:3] and small["nextCursor"]


def test_a_user_with_two_connections_is_one_participant():
    world = MemoryChatWorld()
    a1, a2 = world.connect("alice"), world.connect("alice")
    a1.send("join_room", {"roomId": "r"}), a2.send("join_room", {"roomId": "r"})
    page = a2.send("get_participants", {"roomId": "r"})["data"]
    assert page == {"roomId": "r", "participants": [{"userId": "alice", "name": "alice"}], "count": 1}
    a1.send("leave_room", {"roomId": "r"})
    assert a2.send("get_participants", {"roomId": "r"})["data"]["count"] == 1
    a2.send("leave_room", {"roomId": "r"})
    assert world.store.room_size("r") == 0 and world.store.participants("r", after_user=None, limit=5).participants == []


def cursor(room: str, user: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"r": room, "u": user}).encode()).decode().rstrip("=")


def test_a_forged_stale_or_foreign_cursor_is_a_validation_error_that_changes_nothing():
    world = MemoryChatWorld()
    clients = crowd(world, 5)
    crowd(world, 2, room="other")
    me = clients[0]
    good = me.send("get_participants", {"roomId": "hall", "limit": 2})["data"]["nextCursor"]
    other = world.clients[sorted(world.clients)[-1]]
    foreign = other.send("get_participants", {"roomId": "other", "limit": 1})["data"]["nextCursor"]
    clients[1].send("leave_room", {"roomId": "hall"})  # the participant `good` pages on from leaves
    me.take()
    before = world.snapshot()
    for bad in (good, foreign, "not a cursor", cursor("hall", "nobody"), good[:-2] + "!!", "e30"):
        reply = me.send("get_participants", {"roomId": "hall", "cursor": bad})
        assert reply["type"] == "error" and reply["data"]["code"] == "validation_error", (bad, reply)
        assert [d["field"] for d in reply["data"]["details"]] == ["cursor"] and "cursor" in reply["data"]["message"]
    # Nothing changed but the rate counter: a stale cursor is found by reading the room, so it counts
    # against the signals allowance (PROTOCOL "Rate limits"); the malformed and foreign ones do not.
    assert without_rate_counters(world.snapshot()) == without_rate_counters(before)
    assert [f["type"] for f in me.take()] == ["error"] * 6  # the route responses, nothing else


def without_rate_counters(snapshot):
    return {table: [i for i in items if not i.get("key", {}).get("S", "").startswith("rate#")] for table, items in snapshot.items()}


def test_get_participants_is_for_members():
    world = MemoryChatWorld()
    crowd(world, 2)
    outsider = world.connect("mallory")
    assert outsider.send("get_participants", {"roomId": "hall"})["data"]["code"] == "not_a_member"


def test_small_rooms_announce_each_join_and_leave_as_before_and_large_ones_coalesce():
    world = MemoryChatWorld(presence_threshold=3)
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "hall"})
    bob = world.connect("bob")
    bob.send("join_room", {"roomId": "hall"})  # a room of 2: announced at once, as always
    assert [f["type"] for f in alice.take()] == ["participants_list", "chat_history", "user_joined"]
    carol = world.connect("carol")
    carol.send("join_room", {"roomId": "hall"})  # the room reaches 3: from here on, presence_update
    assert alice.take() == [] and bob.types() == ["participants_list", "chat_history"]  # his own join only
    world.run_presence()
    assert [f["data"] for f in alice.take()] == [{"roomId": "hall", "joined": [{"userId": "carol", "name": "carol"}], "left": [],
                                                  "joinedCount": 1, "leftCount": 0, "count": 3}]
    bob.send("leave_room", {"roomId": "hall"})  # 3 with him in it: a large room still
    dave = world.connect("dave")
    dave.send("join_room", {"roomId": "hall"})
    assert alice.take() == []
    world.run_presence()
    assert [f["data"] for f in alice.take()] == [{"roomId": "hall", "joined": [{"userId": "dave", "name": "dave"}],
                                                  "left": [{"userId": "bob", "name": "bob"}], "joinedCount": 1, "leftCount": 1, "count": 3}]
    assert [f["type"] for f in carol.take()] == ["participants_list", "chat_history", "presence_update", "presence_update"]
    carol.send("leave_room", {"roomId": "hall"})  # 3 before the leave: coalesced too
    dave.send("leave_room", {"roomId": "hall"})  # 2 before the leave: announced at once
    assert [f["type"] for f in alice.take()] == ["user_left"]


def test_a_join_storm_in_a_large_room_costs_o_n_posts():
    world = MemoryChatWorld(presence_threshold=100)
    crowd(world, 100)
    posts = world.sender.posts
    storm = [world.connect(f"s{n:04d}") for n in range(300)]
    for client in storm:
        client.send("join_room", {"roomId": "hall"})
    joins = world.sender.posts - posts
    assert joins == 300  # one participants_list each; chat_history is the route response
    world.run_presence()  # one interval: one presence_update to each of the 400
    updates = [f for c in storm[:1] for f in c.take() if f["type"] == "presence_update"]
    assert world.sender.posts - posts == 300 + 400
    assert updates[-1]["data"]["joinedCount"] == 300 and len(updates[-1]["data"]["joined"]) == 50
    assert updates[-1]["data"]["count"] == 400


def test_a_user_who_came_and_went_within_one_interval_is_not_announced():
    world = MemoryChatWorld(presence_threshold=2)
    alice, bob = crowd(world, 2)
    visitor = world.connect("visitor")
    visitor.send("join_room", {"roomId": "hall"})
    visitor.send("leave_room", {"roomId": "hall"})
    world.run_presence()
    assert alice.take() == [] and bob.take() == []


def test_presence_batches_are_safe_to_retry():
    world = MemoryChatWorld(presence_threshold=2)
    alice, bob = crowd(world, 2)
    carol = world.connect("carol")
    carol.send("join_room", {"roomId": "hall"})
    changes = world.store.drain_presence()
    world.service().announce_presence(changes)
    world.service().announce_presence(changes + changes)  # the stream delivered the batch again
    world.collect()
    updates = [f["data"] for f in alice.take() if f["type"] == "presence_update"]
    assert updates[0] == updates[1] and updates[0]["joined"] == [{"userId": "carol", "name": "carol"}]
