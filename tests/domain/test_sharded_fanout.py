"""A broadcast to a room above the shard size is split into slices delivered by separate
invocations; a retried slice never posts twice to a connection; small rooms are unchanged."""

from __future__ import annotations

import json

import pytest

from parley.core.model import ShardJob
from parley_testing.chat_world import MemoryChatWorld, crowd


def received(client) -> list[str]:
    return [f["data"]["messageId"] for f in client.take() if f["type"] == "message_received"]


def test_a_large_room_is_acknowledged_at_once_and_delivered_by_shards():
    world = MemoryChatWorld(fanout_shard_size=100, presence_threshold=10_000)
    clients = crowd(world, 250)
    posts = world.sender.posts
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "to everyone"})
    assert reply["data"] == {"roomId": "hall", "messageId": reply["data"]["messageId"], "status": "sent", "recipients": 249}
    assert [len(j.recipients) for j in world.shards.jobs] == [100, 100, 50] and world.sender.posts == posts
    assert len({j.delivery_id for j in world.shards.jobs}) == 1 == len({j.frame for j in world.shards.jobs})
    world.run_shards()
    message_id = reply["data"]["messageId"]
    assert all(received(c) == [message_id] for c in clients)  # the sender's own connection included
    assert world.sender.posts - posts == 250


def test_a_shard_retried_after_a_crash_posts_to_no_one_twice():
    world = MemoryChatWorld(fanout_shard_size=100, presence_threshold=10_000)
    clients = crowd(world, 150)
    clients[0].send("chat_message", {"roomId": "hall", "message": "once"})
    job, other = world.shards.jobs
    world.shards.jobs.clear()
    world.service().run_fanout(other)
    sends = []
    original = world.sender.send

    def dies_on_the_second_chunk(fanout_job):
        sends.append(len(fanout_job.connection_ids))
        if len(sends) == 2:
            raise RuntimeError("the invocation died half way")
        return original(fanout_job)

    world.sender.send = dies_on_the_second_chunk
    with pytest.raises(RuntimeError):
        world.service().run_fanout(job)
    world.sender.send = original
    world.service().run_fanout(job)  # Lambda's retry of the same event
    world.service().run_fanout(ShardJob.from_event(json.loads(json.dumps(job.to_event()))))  # and another
    world.collect()
    got = {c.user_id: received(c) for c in clients}
    assert all(len(ids) <= 1 for ids in got.values())  # nobody twice
    lost = [u for u, ids in got.items() if not ids]
    assert len(lost) == 100 - 64  # the chunk claimed when the invocation died (history has it)
    late = world.clients[sorted(world.clients)[0]]
    late.send("get_history", {"roomId": "hall"})
    assert [m["message"] for m in late.take()[0]["data"]["messages"]] == ["once"]


def test_typing_in_a_large_room_goes_through_shards_too_and_small_rooms_do_not():
    world = MemoryChatWorld(fanout_shard_size=10, presence_threshold=10_000)
    big = crowd(world, 12)
    big[0].send("typing", {"roomId": "hall", "isTyping": True})  # 11 others: over 10
    assert [len(j.recipients) for j in world.shards.jobs] == [10, 1]
    world.run_shards()
    assert all(c.types() == ["typing_update"] for c in big[1:]) and big[0].take() == []
    small = [world.connect(f"s{n}") for n in range(3)]
    for c in small:
        c.send("join_room", {"roomId": "nook"})
        c.take()
    reply = small[0].send("chat_message", {"roomId": "nook", "message": "hi"})
    assert reply["data"]["status"] == "delivered" and reply["data"]["deliveredTo"] == 2 and world.shards.jobs == []


def test_gone_connections_found_by_a_shard_are_cleaned_up():
    world = MemoryChatWorld(fanout_shard_size=5, presence_threshold=10_000)
    clients = crowd(world, 8)
    world.gone.add(clients[3].connection_id)
    clients[0].send("chat_message", {"roomId": "hall", "message": "x"})
    world.run_shards()
    members = {r["connectionId"] for r in world.store.rows()["MembershipsTable"] if r["memberKey"].startswith("c#")}
    assert clients[3].connection_id not in members and len(members) == 7
    assert [f["data"]["userId"] for f in clients[1].take() if f["type"] == "user_left"] == [clients[3].user_id]


def test_shards_lambda_would_not_take_are_delivered_by_the_handler_itself():
    world = MemoryChatWorld(fanout_shard_size=4, presence_threshold=10_000)
    clients = crowd(world, 10)
    world.shards.refuse = {0, 2}
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "anyway"})
    assert reply["data"]["status"] == "sent" and [j.shard for j in world.shards.jobs] == [1]
    world.run_shards()
    world.run_shards()
    for client in clients:
        assert [f["data"]["message"] for f in client.take() if f["type"] == "message_received"] == ["anyway"]
    assert world.metrics.totals["ShardDispatchFailures"] == 2
