"""The WebSocket side over real sockets: handshake, routing, route responses, limits, timeouts, `$disconnect`."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from parley_testing.fixture_clients import closed_with, connect, my_id, request
from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway
from parley_testing.waiting import wait_for

ID_RE = re.compile(r"^[A-Za-z0-9+/]{15}=$")
CLF_RE = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")


# -- handshake -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 401),  # no identity source: the authorizer is not even invoked
        ("token=nobody", 401),  # the authorizer raised Exception("Unauthorized")
        ("token=deny:mallory", 403),  # Deny policy
        ("token=boom", 500),  # the authorizer crashed
        ("token=garbage", 500),  # no policy in the result
        ("token=allow:alice&connect=status418", 418),  # $connect returned a non-2xx status
        ("token=allow:alice&connect=status401", 401),
        ("token=allow:alice&connect=crash", 502),  # $connect raised
    ],
)
async def test_handshake_refusals(gw: RunningGateway, query: str, status: int):
    with pytest.raises(InvalidStatus) as info:
        await connect(gw, query)
    assert info.value.response.status_code == status


async def test_missing_token_does_not_invoke_the_authorizer(gw: RunningGateway):
    before = len(gw.records(event_type="AUTH"))
    with pytest.raises(InvalidStatus):
        await connect(gw, "")
    assert "401 (no identity source, not invoked)" in gw.console.text()
    assert len(gw.records(event_type="AUTH")) == before


async def test_wrong_stage_is_forbidden(gw: RunningGateway):
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(gw.ws_url.rsplit("/", 1)[0] + "/prod?token=allow:a", open_timeout=5)
    assert info.value.response.status_code == 403


async def test_authorizer_context_on_every_event(gw: RunningGateway):
    ws = await connect(gw, "token=allow:alice&x=1&x=2")
    reply = await request(ws, {"action": "echo"})
    conn_id = reply["requestContext"]["connectionId"]
    expected = {"principalId": "alice", "name": "Alice", "level": 3, "admin": False}
    assert reply["requestContext"]["authorizer"] == expected
    connect_ev = gw.wait_record(conn_id, "CONNECT")["event"]
    assert connect_ev["requestContext"]["authorizer"] == expected
    assert connect_ev["queryStringParameters"] == {"token": "allow:alice", "x": "2"}
    assert connect_ev["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert connect_ev["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", connect_ev["headers"]["X-Amzn-Trace-Id"])  # X-Ray's form
    assert connect_ev["multiValueHeaders"]["Sec-WebSocket-Version"] == ["13"]
    auth_ev = [r["event"] for r in gw.records(event_type="AUTH") if r["event"]["requestContext"]["connectionId"] == conn_id][0]
    assert auth_ev["type"] == "REQUEST" and auth_ev["methodArn"].endswith("/local/$connect")
    await ws.close()
    disc = gw.wait_record(conn_id, "DISCONNECT")["event"]
    assert disc["requestContext"]["authorizer"] == expected


async def test_connect_headers_select_the_subprotocol(gw: RunningGateway):
    ws = await connect(gw, "token=allow:a&connect=proto", subprotocols=["parley.v1"])
    assert ws.subprotocol == "parley.v1"
    await ws.close()


async def test_post_before_connect_finishes_is_gone(gw: RunningGateway):
    """While `$connect` runs (1 s), the connection id exists but PostToConnection answers 410."""
    client = gw.management()
    marker = f"m{time.time_ns()}"
    task = asyncio.create_task(connect(gw, f"token=allow:a&connect=slow&marker={marker}"))

    def connecting_id():
        for rec in gw.records(event_type="CONNECT"):
            if (rec["event"].get("queryStringParameters") or {}).get("marker") == marker:
                return rec["event"]["requestContext"]["connectionId"]
        return None

    conn_id = await asyncio.to_thread(wait_for, connecting_id, 5.0)
    assert not task.done()
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"too early")
    ws = await task
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"now")
    assert await asyncio.wait_for(ws.recv(), 5) == "now"
    await ws.close()


async def test_no_connect_route_accepts(small_gw: RunningGateway):
    ws = await connect(small_gw, "")
    reply = await request(ws, {"action": "echo"})
    assert reply["route"] == "echo" and "authorizer" not in reply["requestContext"]
    await ws.close()


# -- events and ids ------------------------------------------------------------------


async def test_message_event_shape(gw: RunningGateway):
    ws = await connect(gw)
    reply = await request(ws, {"action": "echo", "n": 1})
    ctx = reply["requestContext"]  # the handler validated it with the powertools model first
    assert ID_RE.match(ctx["connectionId"]) and ID_RE.match(ctx["requestId"]) and ID_RE.match(ctx["messageId"])
    assert CLF_RE.match(ctx["requestTime"]) and abs(ctx["requestTimeEpoch"] - time.time() * 1000) < 10_000
    assert ctx["eventType"] == "MESSAGE" and ctx["routeKey"] == "echo" and ctx["stage"] == "local"
    assert ctx["domainName"] == gw.ws_url.split("/")[2] and ctx["identity"] == {"sourceIp": "127.0.0.1"}
    assert ctx["apiId"] == gw.stack.api.api_id and ctx["connectedAt"] <= ctx["requestTimeEpoch"]
    assert reply["body"] == json.dumps({"action": "echo", "n": 1})
    await ws.close()


# -- routing and route responses -----------------------------------------------------


async def test_routing(gw: RunningGateway):
    ws = await connect(gw)
    assert (await request(ws, {"action": 1}))["route"] == "1"  # stringified
    assert (await request(ws, {"action": "unknown"}))["route"] == "$default"
    assert (await request(ws, "this is not json"))["route"] == "$default"
    assert (await request(ws, {"action": "$disconnect"}))["route"] == "$default"
    assert (await request(ws, {"no": "action"}))["route"] == "$default"
    await ws.close()


async def test_failing_handler_gives_internal_server_error(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "fail"}))
    raw = await asyncio.wait_for(ws.recv(), 5)
    assert raw.startswith('{"message": "Internal server error", "connectionId":"')
    frame = json.loads(raw)
    assert frame["connectionId"] == conn_id and ID_RE.match(frame["requestId"])
    assert "ValueError: fixture handler failure" in gw.console.text()  # the traceback is on the console
    assert "Traceback (most recent call last)" in gw.console.text()
    await ws.close()


async def test_no_default_route_gives_forbidden(small_gw: RunningGateway):
    ws = await connect(small_gw, "")
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "nothing-here"}))
    raw = await asyncio.wait_for(ws.recv(), 5)
    frame = json.loads(raw)
    assert frame["message"] == "Forbidden" and frame["connectionId"] == conn_id and ID_RE.match(frame["requestId"])
    await ws.send("not json")
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["message"] == "Forbidden"
    await ws.close()


async def test_route_responses_only_where_configured(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "noreply"}))  # handler returns a body, but no RouteResponse
    await ws.send(json.dumps({"action": "echo", "empty": True}))  # route response, but no body
    gw.wait_record(conn_id, "MESSAGE")
    wait_for(lambda: len(gw.records(conn_id, "MESSAGE")) >= 3, 5)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)
    await ws.close()


# -- size limits -----------------------------------------------------------------------


async def test_frame_over_32k_closes_1009(gw: RunningGateway):
    ws = await connect(gw, max_size=None)
    conn_id = await my_id(ws)
    await ws.send(json.dumps({"action": "echo", "pad": "x" * 33_000}))
    code, _ = await closed_with(ws)
    assert code == 1009
    disc = gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert disc["disconnectStatusCode"] == 1009


async def test_fragmented_message_limits(gw: RunningGateway):
    ws = await connect(gw, max_size=None)
    body = json.dumps({"action": "echo", "pad": "y" * 100_000})
    chunks = [body[i : i + 30_000] for i in range(0, len(body), 30_000)]  # frames under 32 KB, message ~100 KB
    await ws.send(chunks)
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["route"] == "echo" and len(reply["body"]) == len(body)
    big = json.dumps({"action": "echo", "pad": "z" * 140_000})
    await ws.send([big[i : i + 30_000] for i in range(0, len(big), 30_000)])
    code, _ = await closed_with(ws)
    assert code == 1009


async def test_binary_frame_closes_1003(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.send(b"\x00\x01binary")
    code, _ = await closed_with(ws)
    assert code == 1003
    assert gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]["disconnectStatusCode"] == 1003


# -- $disconnect ---------------------------------------------------------------------


async def test_disconnect_reports_the_real_close(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    await ws.close(code=4001, reason="bye now")
    ctx = gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (4001, "bye now")
    assert ctx["eventType"] == "DISCONNECT" and ctx["routeKey"] == "$disconnect"


async def test_disconnect_without_close_code_is_1005(gw: RunningGateway):
    ws = await connect(gw)
    conn_id = await my_id(ws)
    async with ws.send_context():
        ws.protocol.send_close()  # a close frame with no status code
    ctx = gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1005
    assert ctx["disconnectReason"] == "Client-side close frame status not set"


# -- timeouts ------------------------------------------------------------------------


async def test_idle_timeout_closes_and_traffic_resets_it(small_gw: RunningGateway):
    ws = await connect(small_gw, "")
    conn_id = await my_id(ws)
    started = time.monotonic()
    for _ in range(3):  # inbound + outbound traffic every 0.5 s keeps it alive past the 1 s idle timeout
        await asyncio.sleep(0.5)
        await request(ws, {"action": "echo"})
    assert time.monotonic() - started > 1.4 and ws.protocol.close_rcvd is None
    code, reason = await closed_with(ws, 3)
    assert (code, reason) == (1001, "Going away")
    ctx = small_gw.wait_record(conn_id, "DISCONNECT")["event"]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1001


async def test_max_connection_duration(small_gw: RunningGateway):
    ws = await connect(small_gw, "")
    started = time.monotonic()
    try:
        while time.monotonic() - started < 5:
            await request(ws, {"action": "echo"})
            await asyncio.sleep(0.3)
    except ConnectionClosed:
        pass
    elapsed = time.monotonic() - started
    assert 2.3 < elapsed < 3.5
    assert ws.protocol.close_rcvd.code == 1001


# -- functions -----------------------------------------------------------------------


async def test_slow_handler_blocks_nobody(gw: RunningGateway):
    a = await connect(gw)
    b = await connect(gw)
    await my_id(a)  # warm environments, so that the timing below is the calls', not a cold start's under load:
    await asyncio.gather(request(a, {"action": "slow", "sleep": 0.3}), request(b, {"action": "slow", "sleep": 0.3}))  # two of slow
    await a.send(json.dumps({"action": "slow", "sleep": 0.8}))
    started = time.monotonic()
    assert (await request(b, {"action": "slow", "sleep": 0.01}))["route"] == "slow"  # same function, other worker
    assert (await request(a, {"action": "echo"}))["route"] == "echo"  # same connection: not serialized either
    assert time.monotonic() - started < 0.7
    assert json.loads(await asyncio.wait_for(a.recv(), 5))["route"] == "slow"
    await a.close()
    await b.close()


async def test_function_timeout_kills_and_replaces_the_worker(gw: RunningGateway):
    ws = await connect(gw)
    started = time.monotonic()
    frame = await request(ws, {"action": "slow", "sleep": 3})  # SlowFunction has Timeout: 1
    assert frame["message"] == "Internal server error"
    assert 0.9 < time.monotonic() - started < 2.5
    assert "Task timed out after 1.00 seconds" in gw.console.text()
    assert (await request(ws, {"action": "slow", "sleep": 0.01}))["route"] == "slow"
    await ws.close()


async def test_integration_timeout(small_gw: RunningGateway):
    ws = await connect(small_gw, "")
    started = time.monotonic()
    frame = await request(ws, {"action": "echo", "sleep": 2})  # function Timeout 10 s, integration 1 s
    assert frame["message"] == "Internal server error"
    assert time.monotonic() - started < 1.8
    await ws.close()


async def test_wait_for_a_busy_environment_is_not_counted_against_the_integration_timeout(one_environment_gw: RunningGateway):
    """Three runs of 0.6 s at once on one environment: the last is answered after ~1.8 s, past the 1 s
    integration timeout, because it ran for 0.6 s (on AWS each would have had its own environment);
    the wait is reported on the console. A run longer than the timeout still times out."""
    gw = one_environment_gw
    sockets = [await connect(gw, "") for _ in range(3)]
    await request(sockets[0], {"action": "echo"})  # the one environment is warm
    started = time.monotonic()
    replies = await asyncio.gather(*(request(ws, {"action": "echo", "sleep": 0.6}) for ws in sockets))
    assert [r.get("route") for r in replies] == ["echo"] * 3, replies
    assert time.monotonic() - started > 1.5  # they did take turns
    wait_for(lambda: "waited up to" in gw.console.text() and "the integration timeout counts from the start of each run" in gw.console.text(), 5)
    frame = await request(sockets[0], {"action": "echo", "sleep": 1.5})
    assert frame["message"] == "Internal server error"  # its own run is over the timeout
    for ws in sockets:
        await ws.close()


async def test_function_environments_are_isolated(gw: RunningGateway):
    ws = await connect(gw)
    a = await request(ws, {"action": "env_a"})
    b = await request(ws, {"action": "env_b"})
    e = await request(ws, {"action": "echo"})
    assert a["env"]["FIXTURE_VALUE"] == "value-a" and a["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "fx-env-a"
    assert b["env"]["FIXTURE_VALUE"] == "value-b" and b["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "fx-EnvBFunction"
    assert e["env"]["FIXTURE_VALUE"] == "global" and e["env"]["AWS_REGION"] == "us-east-1"
    assert a["env"]["SHARED_VALUE"] == "from-override"  # --parameter-overrides
    assert 0 < a["remainingMs"] <= 5000 and a["function"] == "fx-env-a"
    await ws.close()


async def test_handler_output_is_forwarded_with_function_prefix(gw: RunningGateway):
    ws = await connect(gw)
    await request(ws, {"action": "env_b", "print": "hello-console"})
    wait_for(lambda: "[EnvBFunction] printed by handler: hello-console" in gw.console.text(), 5)
    assert re.search(r"env_b\s+\S+=\s+[\d.]+ ms  200", gw.console.text())  # one line per invocation
    await ws.close()


def test_a_reply_does_not_wait_for_its_log_line(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A terminal slow to take the console's lines delays the log, never the client's reply."""
    # A gateway of its own, stopped here: the session-wide ones would still be closing this test's socket
    # when the next test counts the process's open files.
    gateway = RunningGateway(SMALL_TEMPLATE, tmp_path, prewarm=False, stream_events=False, reload=False).start()
    logged: list[str] = []

    def stuck_terminal(text: str) -> None:
        if " echo " in text:  # the echo's line: the gateway's loop blocks in the write, as on a terminal that stopped reading
            time.sleep(0.5)
        logged.append(text)

    async def echo_once() -> tuple[dict, float]:
        async with websockets.connect(gateway.ws_url, open_timeout=10) as ws:
            await request(ws, {"action": "echo"}, 30)  # the echo function's cold start, not timed
            wait_for(lambda: " echo " in gateway.console.text(), 5, what="the first echo's line")  # before the stall
            monkeypatch.setattr(gateway.console, "line", stuck_terminal)
            started = time.perf_counter()
            reply = await request(ws, {"action": "echo"})
            seconds = time.perf_counter() - started
            wait_for(lambda: any(" echo " in line for line in logged), 5, what="the echo's line")  # still written
            monkeypatch.undo()
            return reply, seconds

    try:
        reply, seconds = asyncio.run(echo_once())
    finally:
        gateway.stop()
    assert reply.get("route") == "echo"
    assert seconds < 0.4  # the reply went out before the line
