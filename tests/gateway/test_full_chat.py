"""The real template.yaml and handlers through the local gateway: a three-person chat over real sockets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import websockets

from parley_local.tokens import make_token
from parley_testing.chat_client import Client
from parley_testing.gateway_thread import RunningGateway

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"

pytestmark = pytest.mark.skipif(
    not (TEMPLATE.exists() and (REPO / "layers/common/python/parley/core/service.py").exists()),
    reason="needs the real template.yaml and the parley domain",
)


@pytest.fixture(scope="module")
def real_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-real"), stack_name="parley", prewarm=False).start()
    yield g
    g.stop()


async def test_three_person_chat(real_gw: RunningGateway):
    room = f"room-{time.time_ns()}"
    alice = await Client.open(real_gw, "alice", "Alice")
    bob = await Client.open(real_gw, "bob", "Bob")
    carol = await Client.open(real_gw, "carol", "Carol")

    await alice.send("join_room", roomId=room)
    plist = await alice.expect("participants_list")
    assert [p["userId"] for p in plist["participants"]] == ["alice"]
    assert (await alice.expect("chat_history"))["messages"] == []

    await bob.send("join_room", roomId=room)
    assert {p["userId"] for p in (await bob.expect("participants_list"))["participants"]} == {"alice", "bob"}
    await bob.expect("chat_history")
    joined = await alice.expect("user_joined")
    assert (joined["userId"], joined["name"], joined["roomId"]) == ("bob", "Bob", room)

    await carol.send("join_room", roomId=room)
    await carol.expect("participants_list")
    await carol.expect("chat_history")
    await alice.expect("user_joined", lambda d: d["userId"] == "carol")
    await bob.expect("user_joined", lambda d: d["userId"] == "carol")

    await alice.send("chat_message", roomId=room, message="hello everyone", clientMessageId="c-1")
    got = [await c.expect("message_received") for c in (alice, bob, carol)]
    assert {g["messageId"] for g in got} == {got[0]["messageId"]} and got[1]["message"] == "hello everyone"
    assert got[2]["userId"] == "alice" and got[2]["name"] == "Alice" and got[0]["clientMessageId"] == "c-1"
    update = await alice.expect("chat_update", lambda d: d["status"] == "delivered")
    assert update["deliveredTo"] == 2 and update["messageId"] == got[0]["messageId"]

    await bob.send("typing", roomId=room, isTyping=True)
    for other in (alice, carol):
        typing = await other.expect("typing_update")
        assert typing == {"roomId": room, "userId": "bob", "isTyping": True}
    await bob.quiet("typing_update")

    await bob.send("mark_read", roomId=room, messageId=got[0]["messageId"])
    for other in (alice, carol):
        read = await other.expect("chat_update", lambda d: d["status"] == "read")
        assert read["userId"] == "bob" and read["messageId"] == got[0]["messageId"]

    await carol.send("get_history", roomId=room)
    history = await carol.expect("chat_history")
    assert [m["message"] for m in history["messages"]] == ["hello everyone"] and history["hasMore"] is False

    await alice.send("ping")
    assert "timestamp" in await alice.expect("pong")
    await alice.ws.send("not json at all")
    assert (await alice.expect("error"))["code"] == "invalid_json"
    await alice.send("no_such_type")
    assert (await alice.expect("error"))["code"] == "unknown_type"

    await carol.ws.close()
    for other in (alice, bob):
        left = await other.expect("user_left")
        assert (left["userId"], left["roomId"]) == ("carol", room)

    await alice.ws.close()
    await bob.ws.close()


async def test_bad_token_is_refused_with_401(real_gw: RunningGateway):
    for query in ("", "?token=not-a-jwt", f"?token={make_token('eve', ttl_s=-10)}"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await websockets.connect(real_gw.ws_url + query, open_timeout=30)
        assert info.value.response.status_code == 401
