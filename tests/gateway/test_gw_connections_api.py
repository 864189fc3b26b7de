"""The `@connections` API over real HTTP, through a real boto3 `apigatewaymanagementapi` client."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import aiohttp
import pytest
import websockets

from parley_testing.gateway_thread import RunningGateway
from parley_testing.waiting import wait_for
from parley_testing.fixture_clients import closed_with, connect, my_id, request


async def test_post_get_delete_with_stage(gw: RunningGateway):
    client = gw.management()
    ws = await connect(gw, "token=allow:alice", user_agent_header="parley-test/1.0")
    conn_id = await my_id(ws)
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b'{"hello": 1}')
    assert await asyncio.wait_for(ws.recv(), 5) == '{"hello": 1}'

    info = await asyncio.to_thread(client.get_connection, ConnectionId=conn_id)
    assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "parley-test/1.0"}
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((now - info["ConnectedAt"]).total_seconds()) < 30
    assert info["LastActiveAt"] >= info["ConnectedAt"]

    res = await asyncio.to_thread(client.delete_connection, ConnectionId=conn_id)
    assert res["ResponseMetadata"]["HTTPStatusCode"] == 204
    code, _ = await closed_with(ws)
    assert code == 1000
    ctx = gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1000, "Connection Closed Normally")
    with pytest.raises(client.exceptions.GoneException):  # closed id
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"late")


async def test_without_stage_and_percent_encoded_ids(gw: RunningGateway):
    client = gw.management(with_stage=False)  # boto3 sends /@connections/{id} with `=` as %3D
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"no stage")
    assert await asyncio.wait_for(ws.recv(), 5) == "no stage"
    encoded = conn_id.replace("=", "%3D")
    async with aiohttp.ClientSession() as http:
        for url in (f"{gw.http_url}/local/@connections/{encoded}", f"{gw.http_url}/%40connections/{encoded}"):
            async with http.post(url, data=b"raw", headers={"Authorization": "AWS4-HMAC-SHA256 fake"}) as res:
                assert res.status == 200, url
            assert await asyncio.wait_for(ws.recv(), 5) == "raw"
    await ws.close()


async def test_errors_are_modelled_for_boto3(gw: RunningGateway):
    client = gw.management()
    with pytest.raises(client.exceptions.GoneException) as gone:
        await asyncio.to_thread(client.post_to_connection, ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.get_connection, ConnectionId="AAAAAAAAAAAAAAA=")
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.delete_connection, ConnectionId="AAAAAAAAAAAAAAA=")

    ws = await connect(gw)
    conn_id = await my_id(ws)
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"a" * 131_072)
    assert len(await asyncio.wait_for(ws.recv(), 5)) == 131_072
    with pytest.raises(client.exceptions.PayloadTooLargeException) as big:
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"a" * 131_073)
    assert big.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    wrong_stage = gw.management()
    wrong_stage.meta.events.register(
        "before-sign.apigatewaymanagementapi.*",
        lambda request, **_: setattr(request, "url", request.url.replace("/local/@connections", "/prod/@connections")),
    )
    with pytest.raises(wrong_stage.exceptions.ForbiddenException):
        await asyncio.to_thread(wrong_stage.post_to_connection, ConnectionId=conn_id, Data=b"x")
    async with aiohttp.ClientSession() as http:  # unsigned: 403 with the modelled error type
        async with http.post(f"{gw.http_url}/local/@connections/{conn_id}", data=b"x") as res:
            assert res.status == 403 and res.headers["x-amzn-ErrorType"] == "ForbiddenException"
            assert "message" in await res.json()
    await ws.close()


async def test_post_latency_and_429(latency_gw: RunningGateway):
    client = latency_gw.management(max_pool_connections=20)
    ws = await connect(latency_gw, "")
    conn_id = await my_id(ws)
    started = time.monotonic()
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"slow")
    assert time.monotonic() - started >= 0.3
    assert await asyncio.wait_for(ws.recv(), 5) == "slow"

    async with aiohttp.ClientSession() as http:
        async def raw_post(i: int) -> int:
            url = f"{latency_gw.http_url}/local/@connections/{conn_id}"
            async with http.post(url, data=f"m{i}".encode(), headers={"Authorization": "AWS4-HMAC-SHA256 x"}) as res:
                if res.status == 429:
                    assert res.headers["x-amzn-ErrorType"] == "LimitExceededException"
                return res.status

        statuses = await asyncio.gather(*(raw_post(i) for i in range(8)))
        assert sorted(statuses) == [200] * 3 + [429] * 5  # 3 queued, the rest refused
        in_flight = [asyncio.create_task(raw_post(i)) for i in range(3)]
        await asyncio.sleep(0.1)
        with pytest.raises(client.exceptions.LimitExceededException):  # boto3 maps the 429
            await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"x")
        assert await asyncio.gather(*in_flight) == [200, 200, 200]
    await ws.close()


async def test_handlers_reach_connections_through_the_endpoint_variable(gw: RunningGateway):
    a = await connect(gw)
    b = await connect(gw)
    a_id, b_id = await my_id(a), await my_id(b)
    reply = await request(a, {"action": "post", "target": b_id, "text": "from a handler"})
    assert reply == {"result": "ok"}
    assert await asyncio.wait_for(b.recv(), 5) == "from a handler"
    assert a_id != b_id
    await b.close()
    await a.close()


async def test_fanout_results_include_gone(gw: RunningGateway):
    a = await connect(gw)
    a_id = await my_id(a)
    await a.send(json.dumps({"action": "post", "op": "fanout", "targets": [a_id, "AAAAAAAAAAAAAAA="], "text": "fan"}))
    frames = [await asyncio.wait_for(a.recv(), 5) for _ in range(2)]
    replies = [json.loads(f) for f in frames if f != "fan"]
    assert "fan" in frames and replies == [{"results": ["ok", "gone"]}]
    reply = await request(a, {"action": "post", "op": "get"})
    assert reply["identity"]["SourceIp"] == "127.0.0.1"
    await a.send(json.dumps({"action": "post", "op": "delete"}))
    code, _ = await closed_with(a)
    assert code == 1000


async def test_shutdown_runs_disconnect_for_open_sockets(tmp_path):
    from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway as RG

    g = RG(SMALL_TEMPLATE, tmp_path, prewarm=False).start()
    try:
        socks = [await websockets.connect(g.ws_url, open_timeout=5) for _ in range(3)]
        ids = [await my_id(s) for s in socks]
    finally:
        await asyncio.to_thread(g.stop)
    for s in socks:
        code, reason = await closed_with(s)
        assert (code, reason) == (1001, "Going away")
    for conn_id in ids:
        ctx = wait_for(lambda: (g.records(conn_id, "DISCONNECT") or [None])[-1], 5)["event"]["requestContext"]
        assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")
