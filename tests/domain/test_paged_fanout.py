"""A broadcast to a room beyond one page: the handler reads one page, dispatches its shards and hands
the rest of the room to one continuation; everyone gets the frame exactly once, also when the
continuation is retried after members joined or left."""

from __future__ import annotations

import json

import pytest

from parley.core.model import BadFanoutEvent, RoomContinuation, ShardJob, fanout_work_of_event
from parley_testing.chat_world import MemoryChatWorld, crowd

PAGE, SHARD = 25, 10


def paged_world() -> MemoryChatWorld:
    return MemoryChatWorld(fanout_shard_size=SHARD, fanout_page_size=PAGE, presence_threshold=10_000)


def received(client) -> list[str]:
    return [f["data"]["messageId"] for f in client.take() if f["type"] == "message_received"]


def test_a_room_beyond_one_page_reads_one_page_here_and_the_rest_in_one_continuation():
    world = paged_world()
    clients = crowd(world, 101)
    world.shards.dispatched.clear()
    reads, plans = world.store.calls.get("room_members_page", 0), world.store.calls.get("plan_fanout_page", 0)
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "to all"})
    # The handler: one page of the room (the membership check included), nothing posted yet.
    assert world.store.calls["room_members_page"] - reads == 1
    assert reply["data"] == {"roomId": "hall", "messageId": reply["data"]["messageId"], "status": "sent", "recipients": 100}
    first, *shards = world.shards.dispatched
    assert isinstance(first, RoomContinuation) and first.first_shard == 3 == len(shards)
    assert [len(j.recipients) for j in shards] == [10, 10, 5]
    assert first.after == sorted(c.connection_id for c in clients)[PAGE - 1]
    world.run_shards()
    message_id = reply["data"]["messageId"]
    assert {c.user_id: received(c) for c in clients} == {c.user_id: [message_id] for c in clients}
    numbers = [j.shard for j in world.shards.dispatched if isinstance(j, ShardJob)]
    assert sorted(numbers) == list(range(len(numbers)))  # every shard its own number: its own claims
    assert world.store.calls["plan_fanout_page"] - plans == 4  # the continuation's pages: 25 + 25 + 25 + 1


def test_a_room_of_exactly_one_page_is_served_as_before_without_a_continuation():
    world = paged_world()
    clients = crowd(world, PAGE)
    world.shards.dispatched.clear()
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "x"})
    assert reply["data"]["recipients"] == PAGE - 1
    assert all(isinstance(j, ShardJob) for j in world.shards.dispatched)
    world.run_shards()
    assert all(len(received(c)) == 1 for c in clients)


class CrashAfter:
    """The dispatcher of a continuation that dies after queueing `accepted` more jobs."""

    def __init__(self, world: MemoryChatWorld, accepted: int) -> None:
        self.queue, self.left = world.shards, accepted

    def dispatch(self, jobs):
        taken = jobs[:self.left]
        self.queue.dispatch(taken)
        self.left -= len(taken)
        if len(taken) < len(jobs):
            raise RuntimeError("the continuation's invocation died")
        return []


@pytest.mark.parametrize("accepted", [0, 2, 4, 7])
def test_a_retried_continuation_delivers_to_no_one_twice_even_when_members_joined_and_left(accepted):
    world = paged_world()
    clients = crowd(world, 120)
    clients[0].send("chat_message", {"roomId": "hall", "message": "once"})
    continuation = next(j for j in world.shards.jobs if isinstance(j, RoomContinuation))
    world.shards.jobs.remove(continuation)
    world.run_shards()  # the handler's own page
    crashing = world.service()
    crashing._shards = CrashAfter(world, accepted)
    with pytest.raises(RuntimeError):
        crashing.run_fanout(continuation)
    world.run_shards()  # what the dead attempt had queued ran
    # Between the attempts: members leave from every part of the room, and newcomers join.
    ordered = sorted(clients[1:], key=lambda c: c.connection_id)
    leaving = ordered[30::9]
    for client in leaving:
        client.send("leave_room", {"roomId": "hall"})
    newcomers = crowd(world, 30, first=500)
    world.shards.jobs.clear()  # (the newcomers' own joins queued nothing that matters here)
    # Lambda's retry of the same event, and a duplicate delivery of it.
    world.service().run_fanout(RoomContinuation.from_event(json.loads(json.dumps(continuation.to_event()))))
    world.run_shards()
    world.service().run_fanout(continuation)
    world.run_shards()
    got = {c.connection_id: received(c) for c in world.clients.values()}
    assert all(len(ids) <= 1 for ids in got.values()), "someone got the message twice"
    throughout = [c for c in clients if c not in leaving]
    assert [c.user_id for c in throughout if not got[c.connection_id]] == []  # nobody present throughout is skipped
    # The newcomers' connections sort after everyone's, past the pages the dead attempt recorded (it died
    # by its 8th job, before the last page's plan): the retries read them fresh, so the join between the
    # attempts is really exercised, and each newcomer got the message exactly once.
    assert [c.user_id for c in newcomers if len(got[c.connection_id]) != 1] == []


def test_a_continuation_lambda_would_not_take_is_run_by_the_handler_itself():
    world = paged_world()
    clients = crowd(world, 60)
    world.shards.refuse_continuations = True
    world.shards.dispatched.clear()
    clients[0].send("chat_message", {"roomId": "hall", "message": "anyway"})
    assert not any(isinstance(j, RoomContinuation) for j in world.shards.dispatched)
    world.run_shards()
    assert all(len(received(c)) == 1 for c in clients)
    assert world.metrics.totals["ShardDispatchFailures"] == 1


def test_a_continuation_run_where_no_dispatcher_is_wired_delivers_its_shards_itself():
    world = paged_world()
    clients = crowd(world, 70)
    continuation = RoomContinuation("hall", "01JDQ3VY9Z8X7W6V5T4S3R2Q1P", '{"type":"ping"}', sorted(world.clients)[9], 1)
    world.fanout_shard_size = None  # the service has no dispatcher
    world.service().run_fanout(continuation)
    world.collect()
    got = {c.connection_id: [f["type"] for f in c.take()] for c in clients}
    assert [cid for cid, types in got.items() if types] == sorted(world.clients)[10:]
    assert all(types == ["ping"] for types in got.values() if types)


def test_without_a_dispatcher_a_paged_room_is_read_whole_and_sent_here():
    world = MemoryChatWorld(fanout_page_size=PAGE, presence_threshold=10_000)
    clients = crowd(world, 60)
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "direct"})
    assert reply["data"]["status"] == "delivered" and reply["data"]["deliveredTo"] == 59
    assert all(len(received(c)) == 1 for c in clients)


def test_typing_beyond_one_page_skips_the_typist_in_the_continuation_too():
    world = paged_world()
    clients = crowd(world, 80)
    typist = max(clients, key=lambda c: c.connection_id)  # in the continuation's part of the room
    typist.send("typing", {"roomId": "hall", "isTyping": True})
    world.run_shards()
    assert typist.take() == []
    assert all(c.types() == ["typing_update"] for c in clients if c is not typist)


def test_a_member_beyond_the_first_page_passes_the_membership_check_and_a_stranger_does_not():
    world = paged_world()
    clients = crowd(world, 40)
    last = max(clients, key=lambda c: c.connection_id)
    assert last.send("chat_message", {"roomId": "hall", "message": "from page 2"})["data"]["status"] == "sent"
    stranger = world.connect("zz-stranger")
    assert stranger.send("chat_message", {"roomId": "hall", "message": "x"})["data"]["code"] == "not_a_member"


@pytest.mark.parametrize("change", [
    {"roomId": "../other"}, {"roomId": 7}, {"deliveryId": "not-a-ulid"}, {"continueAfter": "c#x"},
    {"continueAfter": ""}, {"continueAfter": "a" * 200}, {"firstShard": -1}, {"firstShard": "3"},
    {"firstShard": True}, {"frame": None}, {"exclude": "bad key"},
    {"frame": "not json"}, {"frame": "[1, 2]"}, {"frame": '{"data": {}}'}, {"frame": '{"type": 5}'},
])
def test_a_malformed_continuation_event_is_refused_before_anything_is_read(change):
    good = RoomContinuation("hall", "01JDQ3VY9Z8X7W6V5T4S3R2Q1P", '{"type":"x"}', "conn0000001AAAA=", 3).to_event()
    assert fanout_work_of_event(good) == RoomContinuation.from_event(good)
    with pytest.raises(BadFanoutEvent):
        fanout_work_of_event({**good, **change})
    with pytest.raises(BadFanoutEvent):
        fanout_work_of_event({"roomId": "hall"})  # neither a continuation nor a shard


@pytest.mark.parametrize("event", ['{"continueAfter": "x"}', None, 5, ["roomId", "hall"]])
def test_an_event_that_is_not_an_object_is_refused_as_malformed(event):
    with pytest.raises(BadFanoutEvent):
        fanout_work_of_event(event)  # type: ignore[arg-type]


def test_a_shard_whose_frame_is_not_an_encoded_frame_is_refused():
    good = ShardJob("hall", "01JDQ3VY9Z8X7W6V5T4S3R2Q1P", 0, '{"type":"x"}', (("conn0000001AAAA=", "u1"),)).to_event()
    assert fanout_work_of_event(good) == ShardJob.from_event(good)
    with pytest.raises(BadFanoutEvent):
        fanout_work_of_event({**good, "frame": "<script>"})
