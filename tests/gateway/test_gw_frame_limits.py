"""API Gateway's 128 KB server->client message limit, enforced by the local gateway over real sockets.

`PostToConnection` over 131,072 bytes gets 413 `PayloadTooLargeException` and delivers nothing, on
the HTTP route and on the workers' pipe alike; the socket stays open. A route response over the
limit is never delivered: the gateway logs one line naming the limit and the route and closes the
socket with 1009 (the choice is explained in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import websockets

from parley_testing.fixture_clients import closed_with, connect, my_id, request
from parley_testing.gateway_thread import RunningGateway

LIMIT = 131_072


async def assert_open_and_nothing_else_arrived(ws: Any, gw: RunningGateway, conn_id: str) -> None:
    """A small post sent now is the very next frame: the refused one never arrived and the socket is open."""
    await asyncio.to_thread(gw.management().post_to_connection, ConnectionId=conn_id, Data=b"after")
    assert await asyncio.wait_for(ws.recv(), 5) == "after"


async def test_http_post_at_the_limit_is_delivered_and_one_byte_more_is_413(gw: RunningGateway):
    client = gw.management()
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"x" * LIMIT)
    assert await asyncio.wait_for(ws.recv(), 5) == "x" * LIMIT

    with pytest.raises(client.exceptions.PayloadTooLargeException) as big:
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"y" * (LIMIT + 1))
    assert big.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert str(LIMIT) in big.value.response["Error"]["Message"]
    await assert_open_and_nothing_else_arrived(ws, gw, conn_id)
    await ws.close()


async def test_http_post_without_content_length_is_measured_too(gw: RunningGateway):
    """A chunked body has no Content-Length to refuse early: the size check on the data itself catches it."""
    ws = await connect(gw)
    conn_id = await my_id(ws)

    async def chunks(total: int) -> Any:
        for start in range(0, total, 16_384):
            yield b"z" * min(16_384, total - start)

    async with aiohttp.ClientSession() as http:
        url = f"{gw.http_url}/local/@connections/{conn_id}"
        async with http.post(url, data=chunks(LIMIT + 1), headers={"Authorization": "AWS4-HMAC-SHA256 fake"}) as res:
            assert res.status == 413
            assert res.headers["x-amzn-ErrorType"] == "PayloadTooLargeException"
            assert str(LIMIT) in json.loads(await res.read())["message"]
    await assert_open_and_nothing_else_arrived(ws, gw, conn_id)
    await ws.close()


async def test_handler_post_over_the_pipe_gets_413_and_nothing_is_sent(gw: RunningGateway, http_calls: list[str]):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "post", "bytes": LIMIT}))
    assert await asyncio.wait_for(ws.recv(), 10) == "p" * LIMIT
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"result": "ok"}

    # The handler catches client.exceptions.PayloadTooLargeException and returns its status.
    assert await request(ws, {"action": "post", "bytes": LIMIT + 1}) == {"result": "too_large 413"}
    assert http_calls == []  # both went over the worker pipe
    await assert_open_and_nothing_else_arrived(ws, gw, conn_id)
    await ws.close()


async def test_route_response_at_the_limit_is_delivered(gw: RunningGateway):
    ws = await connect(gw)
    await ws.send(json.dumps({"action": "echo", "reply_bytes": LIMIT}))
    assert await asyncio.wait_for(ws.recv(), 10) == "r" * LIMIT
    await ws.close()


async def test_route_response_over_the_limit_is_not_delivered_and_closes_1009(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "echo", "reply_bytes": LIMIT + 1}))
    with pytest.raises(websockets.ConnectionClosed):
        frame = await asyncio.wait_for(ws.recv(), 10)
        pytest.fail(f"an oversized route response was delivered ({len(frame)} chars)")
    assert await closed_with(ws) == (1009, "Message too big")
    ctx = gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1009, "Message too big")
    loud = [line for line in gw.console.text().splitlines() if conn_id in line and "LIMIT EXCEEDED" in line]
    assert len(loud) == 1
    assert "'echo'" in loud[0] and f"{LIMIT + 1}-byte" in loud[0] and str(LIMIT) in loud[0]
