"""Large-room presence through the local gateway: join/leave write `p#` records, the gateway polls
the memberships table's stream like the template's event source mapping (filter, batching
window) and invokes PresenceFunction, which sends one coalesced `presence_update` per batch.
Parley's real template with `PresenceThreshold` at its MinValue, over real sockets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from parley_local.gateway.stream_events import PatternRefused, compile_pattern
from parley_testing.chat_client import Client
from parley_testing.gateway_thread import RunningGateway

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
THRESHOLD = 2  # the template's MinValue for PresenceThreshold
JOINERS = 4

pytestmark = pytest.mark.skipif(
    not (TEMPLATE.exists() and (REPO / "functions/presence/app.py").exists()),
    reason="needs the real template.yaml with PresenceFunction",
)


@pytest.fixture(scope="module")
def presence_gw(stream_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """On both stream implementations (`stream_backend`)."""
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-presence"), stack_name="parley", prewarm=False,
                       dynamodb=stream_backend, overrides={"PresenceThreshold": str(THRESHOLD)}).start()
    yield g
    g.stop()


async def _presence_until(client: Client, want: set[str], key: str, room: str, timeout: float = 30) -> list[dict[str, Any]]:
    """`presence_update` frames for `room` until every user in `want` is listed under `key`."""
    updates: list[dict[str, Any]] = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen:
        update = await client.expect("presence_update", lambda d: d["roomId"] == room, timeout=max(0.1, deadline - time.monotonic()))
        updates.append(update)
        seen |= {u["userId"] for u in update[key]}
    return updates


async def test_a_large_room_hears_joins_and_leaves_as_coalesced_presence_updates(presence_gw: RunningGateway):
    assert [s.function for s in presence_gw.stack.stream_sources] == ["PresenceFunction"]
    room = f"hall-{time.time_ns()}"
    members = [await Client.open(presence_gw, f"m{i}", f"Member {i}") for i in range(THRESHOLD)]
    for m in members:
        await m.send("join_room", roomId=room)
        await m.expect("chat_history")
    # The room reached the threshold with the last member's join: that one is announced by presence too.
    for m in members:
        await _presence_until(m, {members[-1].user}, "joined", room)

    joiners = [await Client.open(presence_gw, f"j{i}", f"Joiner {i}") for i in range(JOINERS)]
    await asyncio.gather(*(j.send("join_room", roomId=room) for j in joiners))
    await asyncio.gather(*(j.expect("chat_history") for j in joiners))  # every join answers its caller at once
    want = {j.user for j in joiners}
    for m in members:
        updates = await _presence_until(m, want, "joined", room)
        assert len(updates) < JOINERS, updates  # coalesced: fewer frames than joins
        last = updates[-1]
        assert last["count"] == THRESHOLD + JOINERS and last["left"] == []
        assert {u["name"] for up in updates for u in up["joined"]} == {f"Joiner {i}" for i in range(JOINERS)}
        assert not [f for f in m.backlog if f["type"] == "user_joined"]  # no per-join broadcast in a large room

    leavers = joiners[:2]
    await asyncio.gather(*(j.send("leave_room", roomId=room) for j in leavers))
    gone = {j.user for j in leavers}
    for m in members:
        updates = await _presence_until(m, gone, "left", room)
        assert updates[-1]["count"] == THRESHOLD + JOINERS - len(leavers)
        assert not [f for f in m.backlog if f["type"] == "user_left"]
    assert "DynamoDB stream" in presence_gw.console.text()
    for c in members + joiners:
        await c.ws.close()


def test_filter_patterns_match_as_lambda_and_unsupported_forms_are_refused():
    match = compile_pattern('{"eventName": ["INSERT"], "dynamodb": {"Keys": {"memberKey": {"S": [{"prefix": "p#"}]}}}}')
    record = {"eventName": "INSERT", "dynamodb": {"Keys": {"memberKey": {"S": "p#123#u1"}}}}
    assert match(record)
    assert not match({**record, "eventName": "MODIFY"})
    assert not match({"eventName": "INSERT", "dynamodb": {"Keys": {"memberKey": {"S": "c#abc"}}}})
    assert not match({"eventName": "INSERT", "dynamodb": {"Keys": {"roomId": {"S": "p#x"}}}})
    exists = compile_pattern('{"dynamodb": {"OldImage": [{"exists": false}]}}')
    assert exists({"dynamodb": {}}) and not exists({"dynamodb": {"OldImage": {}}})
    for unsupported in ('{"eventName": [{"anything-but": ["REMOVE"]}]}', '{"eventName": "INSERT"}', '["INSERT"]', "not json"):
        with pytest.raises(PatternRefused):
            compile_pattern(unsupported)


def test_the_shard_list_is_read_again_when_a_shard_closes_not_every_second():
    from parley_local.gateway.stream_events import SHARD_REFRESH_S, SHARD_SAFETY_REFRESH_S, shard_list_due

    open_shard = {"shard-1": "iterator"}
    assert not shard_list_due(open_shard, SHARD_REFRESH_S * 2)  # an open shard: the list is not read each second
    assert shard_list_due(open_shard, SHARD_SAFETY_REFRESH_S)  # only as a safety net
    assert shard_list_due(open_shard, float("inf"))  # a shard closed in the last pass (refreshed_at = -inf)
    closed = {"shard-1": None}
    assert not shard_list_due(closed, SHARD_REFRESH_S / 2)
    assert shard_list_due(closed, SHARD_REFRESH_S)  # nothing open yet: look for a first shard every second
    assert shard_list_due({}, SHARD_REFRESH_S)


class _RollingStream:
    """A stream of two open shards whose first closes after its second page and is followed by a child
    shard, as DynamoDB Local's roll-over (every 4 h) does; what a mapping reads, call by call."""

    def __init__(self) -> None:
        self.rolled = False
        self.describes = 0
        self.pages = {"a-1": ([_raw("1")], "a-2"), "a-2": ([_raw("2")], None), "b-1": ([], "b-1"),
                      "child-1": ([_raw("3")], "child-2"), "child-2": ([], "child-2")}

    async def describe_stream(self, stream_arn: str, after: str | None = None) -> dict[str, Any]:
        self.describes += 1
        shards = [{"ShardId": "a", "SequenceNumberRange": {"StartingSequenceNumber": "1", **({"EndingSequenceNumber": "2"} if self.rolled else {})}},
                  {"ShardId": "b", "SequenceNumberRange": {"StartingSequenceNumber": "1"}}]
        if self.rolled:
            shards.append({"ShardId": "child", "ParentShardId": "a", "SequenceNumberRange": {"StartingSequenceNumber": "3"}})
        return {"Shards": shards}

    async def get_shard_iterator(self, stream_arn: str, shard_id: str, kind: str, after: str | None = None) -> str:
        return f"{shard_id}-1"

    async def get_records(self, iterator: str, limit: int) -> dict[str, Any]:
        records, following = self.pages[iterator]
        if iterator == "a-2":
            self.rolled = True  # the parent's last page: sealed, its child listed from now on
        return {"Records": records, **({"NextShardIterator": following} if following else {})}


def _raw(sequence: str) -> dict[str, Any]:
    return {"eventID": sequence, "eventName": "INSERT", "dynamodb": {"SequenceNumber": sequence, "Keys": {"pk": {"S": sequence}}}}


async def test_a_child_shard_is_read_on_the_pass_after_its_parent_closes():
    """Another shard stays open, so only the parent's closing (no next iterator) makes the mapping read the
    shard list before its 15 s safety refresh: the child's records come a pass later, not 15 s later."""
    from parley_local.gateway.console import Console
    from parley_local.gateway.stream_events import StreamEventPoller, _Mapping
    from parley_local.gateway.template import StreamEventSource

    stream = _RollingStream()
    source = StreamEventSource("Mapping", "Fn", "Table", "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x", [],
                               starting_position="TRIM_HORIZON")
    mapping = _Mapping(source, "t", [], stream, stream_arn=source.stream_arn)  # type: ignore[arg-type]
    poller = StreamEventPoller([], {}, "http://127.0.0.1:1", None, Console(quiet=True))  # type: ignore[arg-type]
    await StreamEventPoller._refresh_shards(mapping, True)
    read = [[r["dynamodb"]["SequenceNumber"] for r in await poller._read(mapping)] for _ in range(3)]
    assert read == [["1"], ["2"], ["3"]]
    assert stream.describes == 2  # at the start, and once after the parent closed
