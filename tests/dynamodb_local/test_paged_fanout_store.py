"""The paged fan-out on the real store against DynamoDB Local: a room read a page at a time (with an
exact `more`), the continuation's page plans written once, the room's Query and the rate counter
sent together, and a large room's broadcast through `ChatService` delivered to everyone exactly
once across a retried continuation while members join and leave."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from parley.core.model import Member, PagePlan, RequestCharge, RoomContinuation
from parley.core.service import ChatService
from parley_testing.fakes import RecordingSender, ShardQueue


def _id() -> str:
    return uuid.uuid4().hex[:10]


def _seed(store: Any, room: str, ids: list[str]) -> None:
    for cid in ids:
        store.add_member(Member(room, cid, f"user-{cid}", "N", 1))


def test_a_room_is_read_a_page_at_a_time_with_an_exact_more(layer, store):
    room = f"paged-{_id()}"
    ids = sorted(f"k{n:04d}x" for n in range(57))
    _seed(store, room, ids)
    first = store.room_members_page(room, after=None, limit=20)
    assert [m.connection_id for m in first.members] == ids[:20] and first.more and first.next_after == ids[19]
    second = store.room_members_page(room, after=first.next_after, limit=20)
    last = store.room_members_page(room, after=second.next_after, limit=20)
    assert [m.connection_id for m in second.members + last.members] == ids[20:]
    assert not last.more and last.next_after is None
    exact = store.room_members_page(room, after=ids[36], limit=20)  # exactly 20 left: no empty page after
    assert len(exact.members) == 20 and not exact.more
    # A range as a plan bounds it: after one id, up to another, however many there are.
    window = store.room_members_page(room, after=ids[9], limit=None, upto=ids[30])
    assert [m.connection_id for m in window.members] == ids[10:31]
    assert store.room_members_page(room, after=ids[-1], limit=20).members == []
    # Nothing outside the room's connection keys is read: the size, participant and cursor items share the partition.
    store.join_room(Member(room, "zz-joined", "u-zz", "Z", 2))
    store.open_reader(room, "u-zz")
    everyone = store.room_members_page(room, after=None, limit=None).members
    assert [m.connection_id for m in everyone] == [*ids, "zz-joined"]


def test_a_page_plan_is_written_once_and_the_first_one_answers_every_later_attempt(layer, store, ddb):
    tables, _ = layer
    delivery, after = f"01J{_id().upper()[:10]}", "conn-a="
    ours = PagePlan(3, ("b", "c", "d"), True)
    assert store.plan_fanout_page(delivery, after, ours) == ours
    later = PagePlan(3, ("b2", "c2"), False)  # a retry that read the page differently
    assert store.plan_fanout_page(delivery, after, later) == ours
    assert store.plan_fanout_page(delivery, "conn-b=", later) == later  # another page, its own plan
    item = ddb.get_item(TableName=tables.FanoutPlan.Meta.table_name, Key={"key": {"S": f"fanplan#{delivery}#{after}"}},
                        ConsistentRead=True)["Item"]
    assert int(item["expiresAt"]["N"]) > time.time() + 3600  # expired by TTL, like the claims


def test_the_rooms_query_and_the_rate_counter_go_out_together(layer, store, monkeypatch):
    tables, _ = layer
    room = f"both-{_id()}"
    _seed(store, room, ["a1", "a2", "a3"])
    charge = RequestCharge("chat", f"u{_id()}", 123, 60)
    page, hits = store.first_page_and_count(room, 2, charge)
    assert [m.connection_id for m in page.members] == ["a1", "a2"] and page.more and hits == 1
    assert store.first_page_and_count(room, 10, charge)[1] == 2
    # Each call made to wait 0.3 s: together they take one wait, not two.
    in_flight, most = [0], [0]
    lock = threading.Lock()
    for model in (tables.Membership, tables.RateCounter):
        connection = model._get_connection().connection
        original = connection._make_api_call

        def slow(operation: str, kwargs: dict, _original=original) -> Any:
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.3)
            try:
                return _original(operation, kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        monkeypatch.setattr(connection, "_make_api_call", slow)
    started = time.monotonic()
    assert store.first_page_and_count(room, 10, charge)[1] == 3
    assert most[0] == 2 and time.monotonic() - started < 0.55


def test_a_broadcast_beyond_one_page_reaches_everyone_once_across_a_retried_continuation(layer, store):
    room = f"hall-{_id()}"
    ids = sorted(f"m{n:03d}" for n in range(95))
    _seed(store, room, ids)
    sender, queue = RecordingSender(), ShardQueue()

    def service() -> ChatService:
        return ChatService(store, sender, shards=queue, fanout_shard_size=10, fanout_page_size=30)

    page = store.room_members_page(room, after=None, limit=30)
    service()._broadcast(page, {"type": "presence_update", "data": {"roomId": room}}, room)
    continuation = next(job for job in queue.jobs if isinstance(job, RoomContinuation))
    queue.jobs.remove(continuation)

    class DiesAfterFour:
        def __init__(self) -> None:
            self.left = 4

        def dispatch(self, jobs):
            taken = jobs[:self.left]
            queue.dispatch(taken)
            self.left -= len(taken)
            if len(taken) < len(jobs):
                raise RuntimeError("the continuation died")
            return []

    dying = ChatService(store, sender, shards=DiesAfterFour(), fanout_shard_size=10, fanout_page_size=30)
    with pytest.raises(RuntimeError):
        dying.run_fanout(continuation)
    # Between attempts: a member of the page in flight leaves and newcomers join inside its range.
    store.remove_memberships(ids[45], [room])
    _seed(store, room, [ids[40] + "a", ids[41] + "a", ids[70] + "a"])
    for event in (continuation.to_event(), continuation.to_event()):  # Lambda's retry, and a duplicate delivery
        service().run_fanout(RoomContinuation.from_event(json.loads(json.dumps(event))))
    while queue.jobs:
        service().run_fanout(queue.jobs.pop(0))
    got = {cid: len(payloads) for cid, payloads in sender.posted.items()}
    assert max(got.values()) == 1, "someone got the frame twice"
    assert [cid for cid in ids if cid != ids[45] and got.get(cid) != 1] == []
