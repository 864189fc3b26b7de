"""Property-based tests of client frames over REAL WebSockets through the local gateway (issue 5, section 4).

The same generated frames as tests/domain/test_properties.py (non-JSON, JSON that is not an
object, wrong types, deep nesting, huge strings, control characters and unicode, unknown and
missing fields, unknown types, valid frames of every type), and the same oracle written from
PROTOCOL.md, but each frame travels as one WebSocket text frame through `parley dev`'s gateway
(the real template.yaml: route selection, the Lambda workers, the route response, the
`@connections` API and moto's DynamoDB over HTTP).

One gateway for the module, with `alice` (in `lobby` and `side`) and `bob` (in `lobby`) connected.
For every frame alice sends:
- the gateway's invocation line for it must say 200 (no exception escaped the handler);
- then a sentinel (`message` with a fresh token) is sent on both sockets: everything that arrives
  before its echo is what the frame produced, so "exactly one error" / "exactly the documented
  frames" is checked with nothing left unread, and both connections are known to still be open;
- no frame is the gateway's `Internal server error` / `Forbidden`, every frame is strict JSON
  `{type, data}`;
- the tables (scanned through boto3 at the gateway's moto endpoint) change only as the oracle says;
  a rejected frame changes nothing (a `rate_limited` one only counts itself).
Frames over the 32 KB frame limit are sent on throwaway connections and must be closed with 1009.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState
from websockets.sync.client import ClientConnection, connect

from parley_local.tokens import make_token
from parley_local.gateway.ws_limits import FRAME_LIMIT
from parley_testing.gateway_thread import RunningGateway
from parley_testing.waiting import wait_for
from parley_testing.chat_world import ROUTES
from parley_testing.memory_store import TABLES
from parley_testing.oracle import (
    CHAT_LIMIT,
    JOIN_LIMIT,
    SIGNAL_LIMIT,
    State,
    assert_one_error,
    assert_tables,
    assert_wire_frame,
    oracle,
    strict_json,
)
from parley_testing.strategies import Existing, deep_frame, deep_frames, envelopes, garbage, serializer, typed_frames

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
RATE_WINDOW_S = 3600  # the template's maximum: the counters the oracle reads stay in one window

pytestmark = pytest.mark.skipif(
    not (TEMPLATE.exists() and (REPO / "layers/common/python/parley/core/service.py").exists()),
    reason="needs the real template.yaml and the parley domain",
)

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
GATEWAY_TEXTS = ("Internal server error", "Forbidden")
INVOCATION = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+(\S+)\s+[\d.]+ ms  (.*?)(?:  \(cold start, init \d+ ms\))?$")
WAIT_S = 20.0  # every wait is bounded; a healthy exchange takes milliseconds


# ---- the gateway, its tables and two members ------------------------------------------------


class Tables:
    """The gateway's embedded DynamoDB, read through boto3 at its moto endpoint (Scans: tests only)."""

    def __init__(self, g: RunningGateway):
        self.ddb = boto3.client(
            "dynamodb", endpoint_url=g.gateway.aws.dynamodb_endpoint, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
        )
        self.names = {t.logical_id: t.name for t in g.stack.tables}
        assert set(TABLES) <= set(self.names), self.names

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for table in TABLES:
            items = [i for page in self.ddb.get_paginator("scan").paginate(TableName=self.names[table], ConsistentRead=True) for i in page["Items"]]
            out[table] = sorted(items, key=json.dumps)
        return out


def current_window_only(snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The oracle sums a user's `rate#` counters; the handler counts the current window only."""
    window = f"#{int(time.time() * 1000) // (RATE_WINDOW_S * 1000)}"
    keep = [i for i in snap["IdempotencyTable"] if not i["key"]["S"].startswith("rate#") or i["key"]["S"].endswith(window)]
    return {**snap, "IdempotencyTable": keep}


def _connected_since(g: RunningGateway, start: int) -> str | None:
    """The connection id of the one `$connect` the gateway logged from console line `start` on."""
    ids = [m.group(2) for line in g.console.lines[start:] if (m := INVOCATION.match(line)) and m.group(1) == "$connect"]
    assert len(ids) <= 1, ids
    return ids[0] if ids else None


class Peer:
    """A synchronous client; `drain()` returns every frame that arrived before a fresh sentinel's echo."""

    def __init__(self, g: RunningGateway, user: str):
        start = len(g.console.lines)
        self.user = user
        self.ws: ClientConnection = connect(
            f"{g.ws_url}?token={make_token(user, user.title(), 3600)}", open_timeout=30, compression=None, max_size=2**20,
        )
        # Its id as the gateway logged its `$connect` (peers connect one at a time, so this one is the only one).
        self.connection_id = wait_for(lambda: _connected_since(g, start), WAIT_S, interval=0.002, what=f"{user}'s $connect")

    def send(self, type_: str, **data: Any) -> None:
        self.ws.send(json.dumps({"type": type_, "data": data}))

    def drain(self) -> list[str]:
        """Raw frames received until the sentinel comes back (bounded); proves the socket is open."""
        token = f"sentinel-{uuid.uuid4()}"
        self.ws.send(json.dumps({"type": "message", "data": {"message": token}}))
        frames: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.user}: no sentinel echo within {WAIT_S} s; got {frames}")
            raw = self.ws.recv(timeout=left)
            assert isinstance(raw, str), f"{self.user}: a binary frame: {raw[:100]!r}"
            if token in raw:
                reply = json.loads(raw)
                assert reply == {"type": "message_response", "data": {"status": "received", "message": token, "timestamp": reply["data"]["timestamp"]}}
                return frames
            frames.append(raw)

    def close(self) -> None:
        self.ws.close()


class Members:
    def __init__(self, g: RunningGateway):
        self.g = g
        self.tables = Tables(g)
        self.alice = Peer(g, "alice")
        self.bob = Peer(g, "bob")

    def invocations(self, connection_id: str, start: int) -> list[tuple[str, str]]:
        """(route, status) of the invocations the gateway logged for a connection from console line `start` on."""
        out = []
        for line in self.g.console.lines[start:]:
            m = INVOCATION.match(line)
            if m and m.group(2) == connection_id:
                out.append((m.group(1), m.group(3)))
        return out

    def exchange(self, raw: str) -> tuple[str, list[str], list[str]]:
        """Send `raw` as alice; returns the route it took and the frames alice and bob got from it."""
        start = len(self.g.console.lines)
        self.alice.ws.send(raw)
        new = wait_for(lambda: self.invocations(self.alice.connection_id, start), WAIT_S, interval=0.002, what="the frame's invocation")
        time.sleep(0.002)
        new = self.invocations(self.alice.connection_id, start)
        assert len(new) == 1, new
        route, status = new[0]
        assert status == "200", f"the {route} handler did not return 200: {status}"
        return route, self.alice.drain(), self.bob.drain()

    def settle(self) -> None:
        self.alice.drain(), self.bob.drain()


@pytest.fixture(scope="module")
def props_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    # Counter batches of 1: the oracle judges every frame on the counter at once (batches: tests/domain/test_allowance_batches.py).
    overrides = {"ChatRateLimit": str(CHAT_LIMIT), "SignalRateLimit": str(SIGNAL_LIMIT), "RateWindowSeconds": str(RATE_WINDOW_S),
                 "ChatRateBatch": "1", "SignalRateBatch": "1", "JoinRateLimit": str(JOIN_LIMIT), "JoinRateBatch": "1"}
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-props"), stack_name="gwprops", prewarm=False, overrides=overrides).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def members(props_gw: RunningGateway) -> Iterator[Members]:
    """alice in `lobby` and `side`, bob in `lobby`, three messages in `lobby`."""
    m = Members(props_gw)
    for peer, rooms in ((m.alice, ["lobby", "side"]), (m.bob, ["lobby"])):
        for room_id in rooms:
            join(peer, room_id)
    for n in range(3):
        m.alice.send("chat_message", roomId="lobby", message=f"seed {n}")
    # Each seed's chat_update (its route response, sent after its fan-out) must be in before the
    # properties start: a stored message's frames can still be on their way on a busy machine.
    seen: list[str] = []
    wait_for(lambda: seen.extend(m.alice.drain()) or sum('"chat_update"' in f for f in seen) == 3, WAIT_S, what="the seed messages' replies")
    wait_for(lambda: len(m.tables.snapshot()["MessagesTable"]) == 3, WAIT_S, what="the seed messages")
    m.settle()
    yield m
    m.alice.close()
    m.bob.close()


def join(peer: Peer, room_id: str) -> None:
    """join_room, waiting for its route response (chat_history, the last frame a join sends):
    the sentinel of `drain` may come back from its own worker before a slower join is done."""
    peer.send("join_room", roomId=room_id)
    seen: list[str] = []
    wait_for(lambda: seen.extend(peer.drain()) or any('"chat_history"' in f for f in seen), WAIT_S, what=f"join {room_id}")


def ensure_in_lobby(m: Members, snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Put alice back in `lobby` when a leave_room took her out; returns the tables as they now stand."""
    if m.alice.connection_id in State(snap, "", "").members("lobby"):
        return snap
    join(m.alice, "lobby")
    m.settle()
    return m.tables.snapshot()


# ---- one frame against the oracle ----------------------------------------------------------


def parse(raws: list[str]) -> list[dict[str, Any]]:
    frames = []
    for raw in raws:
        ok, frame = strict_json(raw)
        assert ok, f"not strict JSON: {raw[:200]!r}"
        assert not (isinstance(frame, dict) and frame.get("message") in GATEWAY_TEXTS), f"a gateway error frame: {raw[:200]}"
        assert_wire_frame(frame)
        frames.append(frame)
    return frames


def run(m: Members, make_raw: Any, rejoin: bool = False) -> None:
    before = m.tables.snapshot()
    if rejoin:
        before = ensure_in_lobby(m, before)
    state = State(current_window_only(before), m.alice.connection_id, m.bob.connection_id)
    raw = make_raw if isinstance(make_raw, str) else make_raw(state)
    assume(len(raw.encode("utf-8")) <= FRAME_LIMIT)  # larger frames: test_frames_over_32_kb_are_closed_with_1009
    expected = oracle(raw, state, int(time.time() * 1000))
    ok, parsed = strict_json(raw)
    label = parsed.get("type") if ok and isinstance(parsed, dict) and parsed.get("type") in ROUTES else "-"
    event(f"{label}: {expected.error or ' + '.join(expected.sender) or 'no reply'} (bob: {expected.bob}, tables: {expected.tables})")

    route, alice_raw, bob_raw = m.exchange(raw)
    frames, bob_frames = parse(alice_raw), parse(bob_raw)
    after = m.tables.snapshot()

    if expected.error is not None:
        assert_one_error(frames, bob_frames, expected, route)
    else:
        assert [f["type"] for f in frames] == expected.sender, (frames, expected)
        assert [f["type"] for f in bob_frames] == expected.bob, (bob_frames, expected)
        if expected.check is not None:
            expected.check(frames, bob_frames, state, State(current_window_only(after), m.alice.connection_id, m.bob.connection_id))

    assert_tables(expected, before, after)


# ---- the properties ------------------------------------------------------------------------

unicode_and_control = st.sampled_from([
    '{"type":"ping","data":{"roomId":"\\u0000\\u001f"}}',
    '{"type":"chat_message","data":{"roomId":"lobby","message":"\\u0000\\u0007 \\u202e ok \\ud83d\\ude00"}}',
    '{"type":"join_room","data":{"roomId":"ロビー"}}',
    '\u0000\u0001\u001f',
    '{"type":"typing\u0000","data":{}}',
    '{"type":"message","data":{"message":"\u2028\u2029\ufeff\U0001f600"}}',
])


@settings(SETTINGS, max_examples=100)
@given(case=st.one_of(garbage, envelopes.map(json.dumps), deep_frames, unicode_and_control))
@example(case=deep_frame(5000, "[", "frame"))
@example(case=deep_frame(1200, '{"a":', "message"))
@example(case=deep_frame(16_000, "[", "roomId"))
@example(case='{"type":"ping"}\n{"type":"ping"}')
@example(case='{"type":"$disconnect"}')
@example(case='{"type":{"nested":"ping"}}')
@example(case='{"type":"ping","data":{"x":NaN}}')
@example(case="x" * FRAME_LIMIT)  # exactly at the frame limit: accepted, one error
def test_malformed_frames_get_exactly_one_error_and_change_nothing(members: Members, case: str):
    run(members, case)


@settings(SETTINGS, max_examples=150)
@given(frame=typed_frames(), ascii_only=st.booleans(), spaced=st.booleans())
@example(frame={"type": "ping"}, ascii_only=True, spaced=False)
@example(frame={"type": "message", "data": {"message": {"nested": ["x", 1, None, True]}}}, ascii_only=True, spaced=False)
@example(frame={"type": "get_history", "data": {"roomId": "lobby", "limit": 3}}, ascii_only=True, spaced=False)
@example(frame={"type": "join_room", "data": {"roomId": "lobby", "limit": 3}}, ascii_only=True, spaced=False)
@example(frame={"type": "join_room", "data": {"roomId": "lobby", "since": Existing(0), "limit": 2}}, ascii_only=True, spaced=False)
@example(frame={"type": "get_history", "data": {"roomId": "lobby", "before": Existing(2), "limit": 1}}, ascii_only=True, spaced=False)
@example(frame={"type": "chat_message", "data": {"roomId": "lobby", "message": "hi ✓ \u0007", "clientMessageId": "gw-c1", "userId": "mallory"}}, ascii_only=False, spaced=False)
@example(frame={"type": "chat_message", "data": {"roomId": "lobby", "message": "hi again", "clientMessageId": "gw-c1"}}, ascii_only=True, spaced=False)
@example(frame={"type": "chat_message", "data": {"roomId": "side", "message": "y" * 4000}}, ascii_only=True, spaced=False)
@example(frame={"type": "chat_message", "data": {"roomId": "lobby", "message": "y" * 4001}}, ascii_only=True, spaced=False)
@example(frame={"type": "join_room", "data": {"roomId": "lobby\n"}}, ascii_only=True, spaced=False)
@example(frame={"type": "join_room", "data": {"roomId": "lobby", "limit": True}}, ascii_only=True, spaced=False)
@example(frame={"type": "mark_read", "data": {"roomId": "lobby", "messageId": Existing(1)}}, ascii_only=True, spaced=False)
@example(frame={"type": "typing", "data": {"roomId": "lobby", "isTyping": True}}, ascii_only=False, spaced=True)
@example(frame={"type": "typing", "data": {"roomId": "nowhere", "isTyping": False}}, ascii_only=False, spaced=True)
@example(frame={"type": "leave_room", "data": {"roomId": "side"}}, ascii_only=False, spaced=True)
@example(frame={"type": "leave_room", "data": {"roomId": "lobby"}}, ascii_only=False, spaced=True)
def test_typed_frames_get_the_documented_reply_or_exactly_one_error(members: Members, frame: dict[str, Any], ascii_only: bool, spaced: bool):
    run(members, serializer(frame, ascii_only, spaced), rejoin=True)


def padded(template: str, size: int) -> str:
    """`template` with `{}` filled by x's so the UTF-8 frame is exactly `size` bytes."""
    return template.replace("{}", "x" * (size - len(template.encode("utf-8")) + 2))


@pytest.mark.parametrize("raw", [
    pytest.param("x" * (FRAME_LIMIT + 1), id="garbage"),
    pytest.param(padded('{"type":"chat_message","data":{"roomId":"lobby","message":"{}"}}', FRAME_LIMIT + 1), id="chat"),
    pytest.param('{"type":"message","data":{"message":"' + "é" * 16_400 + '"}}', id="unicode-under-32k-chars"),
    pytest.param("[" * 20_000 + "]" * 20_000, id="deep"),
])
def test_frames_over_32_kb_are_closed_with_1009(props_gw: RunningGateway, members: Members, raw: str):
    assert len(raw.encode("utf-8")) > FRAME_LIMIT
    before = members.tables.snapshot()
    throwaway = connect(f"{props_gw.ws_url}?token={make_token('carol', 'Carol', 600)}", open_timeout=30, compression=None)
    throwaway.send(raw)
    with pytest.raises(ConnectionClosed) as info:
        throwaway.recv(timeout=WAIT_S)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009, info.value
    # `$disconnect` removes the throwaway connection: the tables end as they began
    wait_for(lambda: members.tables.snapshot() == before, WAIT_S, what="the tables to return to their state")
    assert members.alice.drain() == [] and members.bob.drain() == []
    assert members.alice.ws.state is WsState.OPEN and members.bob.ws.state is WsState.OPEN
