"""`PostToConnection` from a function to its own gateway travels over the worker's pipe (issue 15).

The answers must be the HTTP route's (200, 410 Gone, 413); and no HTTP request may reach the
gateway's `@connections` route, whether the handler posts through boto3 (the fixture `post`
route) or signs its own urllib3 POST (Parley's `ManagementApiSender`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator

import pytest
import websockets

from parley_local.tokens import make_token
from parley_testing.fixture_clients import connect, my_id, request
from parley_testing.gateway_thread import RunningGateway
from parley_testing.template import ROOT


async def test_boto3_posts_use_the_pipe_with_the_http_answers(gw: RunningGateway, http_calls: list[str]):
    a, b = await connect(gw), await connect(gw)
    a_id, b_id = await my_id(a), await my_id(b)
    assert await request(a, {"action": "post", "target": b_id, "text": "piped"}) == {"result": "ok"}
    assert await asyncio.wait_for(b.recv(), 5) == "piped"
    await a.send(json.dumps({"action": "post", "op": "fanout", "targets": [a_id, b_id, "AAAAAAAAAAAAAAA="], "text": "fan"}))
    frames = [await asyncio.wait_for(a.recv(), 5) for _ in range(2)]
    assert json.loads(next(f for f in frames if f != "fan")) == {"results": ["ok", "ok", "gone"]}
    assert await asyncio.wait_for(b.recv(), 5) == "fan"
    assert http_calls == []
    await a.close()
    await b.close()


@pytest.fixture(scope="module")
def parley_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(ROOT / "template.yaml", tmp_path_factory.mktemp("records-pipe"), stack_name="pipe", reload=False).start()
    yield g
    g.stop()


async def test_parley_fanout_uses_the_pipe(parley_gw: RunningGateway, http_calls: list[str]):
    url = parley_gw.ws_url
    async with websockets.connect(f"{url}?token={make_token('alice', 'Alice')}") as alice, \
            websockets.connect(f"{url}?token={make_token('bob', 'Bob')}") as bob:

        async def until(ws: Any, kind: str) -> dict[str, Any]:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["type"] == kind:
                    return frame

        for ws in (alice, bob):
            await ws.send(json.dumps({"type": "join_room", "data": {"roomId": "pipe"}}))
            await until(ws, "chat_history")
        await alice.send(json.dumps({"type": "chat_message", "data": {"roomId": "pipe", "message": "over the pipe"}}))
        received = await until(bob, "message_received")
        update = await until(alice, "chat_update")
    assert received["data"]["message"] == "over the pipe"
    assert update["data"]["deliveredTo"] == 1
    assert http_calls == []
