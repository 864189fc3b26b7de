"""Many members of a large room leaving at once: every departure is cleaned up and announced once,
whichever comes first of its `$disconnect` and a fan-out that finds its socket gone (410), and a
fan-out's clean-up of a connection whose `$disconnect` already ran is one store call, not a second
whole clean-up."""

from __future__ import annotations

from collections import Counter

from parley_testing.chat_world import MemoryChatWorld, crowd


def _rows_of(world: MemoryChatWorld, connection_id: str) -> list[dict]:
    """The connection's memberships: all a connection leaves in the tables."""
    return [r for r in world.store.rows()["MembershipsTable"] if r.get("connectionId") == connection_id]


def test_half_a_large_room_leaving_while_a_message_fans_out_is_cleaned_up_and_announced_once():
    world = MemoryChatWorld(presence_threshold=10, fanout_shard_size=5)
    clients = crowd(world, 30)
    staying, leaving = clients[:15], clients[15:]
    early, during, late = leaving[:5], leaving[5:10], leaving[10:]
    for client in leaving:
        world.gone.add(client.connection_id)  # every socket closes at once
    for client in early:  # some $disconnects run before the broadcast reads the room
        world.disconnect(client)
    reply = staying[0].send("chat_message", {"roomId": "hall", "message": "still here?"})
    assert reply["data"]["recipients"] == 24  # the room as read: `during` and `late` are still members
    for client in during:  # more run after the shards were cut, before they run
        world.disconnect(client)
    calls = dict(world.store.calls)
    shard_jobs = list(world.shards.jobs)
    world.run_shards()  # 410 from every connection in `during` (already cleaned up) and `late` (not yet)
    shard_calls = Counter({op: n - calls.get(op, 0) for op, n in world.store.calls.items() if n != calls.get(op, 0)})
    # The shards, in connection-id order, five each: the 15 staying (the sender's own connection
    # included), then `during`, then `late`. Each of the last two reads which of its five are still
    # members (one call): `during`, none, so nothing more; `late`, all, so the whole clean-up, once
    # each. (Before: a leave, a rooms_of and a remove_connection for every one of the ten.)
    assert [len(job.recipients) for job in shard_jobs] == [5, 5, 5, 5, 5]
    assert shard_calls == Counter({"claim_deliveries": 5, "members_among": 2, "leave_room": 5, "rooms_of": 5,
                                   "add_presence_change": 5})
    for client in late:  # their $disconnects come last and find nothing left to do
        world.disconnect(client)
    world.run_presence()
    world.run_shards()  # the presence_update goes out through shards too

    for client in leaving:
        assert _rows_of(world, client.connection_id) == []
    assert world.store.room_size("hall") == 15
    participants = world.store.participants("hall", after_user=None, limit=100).participants
    assert [p.user_id for p in participants] == [c.user_id for c in staying]
    # Each departure recorded once, and announced once, whoever cleaned it up.
    left_rows = Counter(r["userId"] for r in world.store.rows()["MembershipsTable"] if r.get("change") == "left")
    assert left_rows == Counter({c.user_id: 1 for c in leaving})
    for client in staying:
        frames = client.take()
        assert [f["data"]["message"] for f in frames if f["type"] == "message_received"] == ["still here?"]
        announced = [u["userId"] for f in frames if f["type"] == "presence_update" for u in f["data"]["left"]]
        assert sorted(announced) == sorted(c.user_id for c in leaving)


def test_a_connection_that_left_the_room_itself_and_then_vanished_is_cleaned_up_by_its_other_rooms():
    """A stale shard finds the socket gone after the client's own leave_room: its other rooms are not
    that shard's to clean (the membership it found gone says another clean-up is on it, which here,
    with `$disconnect` missed, none is), so the next broadcast in each of them does it."""
    world = MemoryChatWorld(presence_threshold=10_000, fanout_shard_size=2)
    alice, bob, carol = crowd(world, 3)
    bob.send("join_room", {"roomId": "annex"})
    alice.send("join_room", {"roomId": "annex"})
    alice.send("chat_message", {"roomId": "hall", "message": "x"})  # shards cut with bob in them
    bob.send("leave_room", {"roomId": "hall"})
    world.gone.add(bob.connection_id)  # then his socket died, and $disconnect never ran
    world.run_shards()
    assert [r["roomId"] for r in _rows_of(world, bob.connection_id) if "memberKey" in r] == ["annex"]
    alice.take()
    alice.send("typing", {"roomId": "annex", "isTyping": True})  # annex's next broadcast
    world.collect()
    assert _rows_of(world, bob.connection_id) == []
    assert [f["data"]["roomId"] for f in alice.take() if f["type"] == "user_left"] == ["annex"]
