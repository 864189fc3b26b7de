"""The gateway's AWS emulation answers this machine only; the WebSocket endpoint and the pages answer anyone.

Over a real gateway on 127.0.0.1 and real sockets. A second machine needs no second network
interface: the app built by `Gateway._build_app` gets one test-only outer middleware that hands
the rest of the chain a clone of the request (`Request.clone(remote=...)`) whose peer is the
address in the `X-Test-Peer` header. Everything after it, `this_machine_only` included, is the
gateway's own, and the clone keeps the real transport (so its socket name is still 127.0.0.1).
A route is added after `_build_app` returns, as a later change to the gateway would add one,
to show that the default is "this machine only".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from parley_local.gateway.server import Gateway, GatewayConfig
from parley_local.gateway.this_machine_only import NOT_FROM_THIS_MACHINE, this_machine_only
from parley_local.parley_extras import ParleyExtras
from parley_testing.fixture_clients import connect, request
from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway

ANOTHER_MACHINE = "192.0.2.7"  # TEST-NET-1: never this machine
PEER_HEADER = "X-Test-Peer"
ADDED_LATER = "/added-later/probe"


def _signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=ab"}


@web.middleware
async def _peer_from_header(req: web.Request, handler: Any) -> web.StreamResponse:
    peer = req.headers.get(PEER_HEADER)
    return await handler(req.clone(remote=peer) if peer else req)


async def _added_later(req: web.Request) -> web.Response:
    return web.json_response({"served": True})


@pytest.fixture(scope="module")
def lan_gw(small_gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose DynamoDB is small_gw's (so it starts no moto of its own), with the peer header."""
    g = RunningGateway(SMALL_TEMPLATE, tmp_path_factory.mktemp("records-lan"), stack_name="lan", prewarm=False,
                       dynamodb_endpoint=small_gw.gateway.aws.dynamodb_endpoint)
    build = g.gateway._build_app

    def build_with_a_second_machine() -> web.Application:
        app = build()
        app.middlewares.insert(0, _peer_from_header)
        app.router.add_get(ADDED_LATER, _added_later)
        return app

    g.gateway._build_app = build_with_a_second_machine  # type: ignore[method-assign]
    g.start()
    yield g
    g.stop()


async def _call(gw: RunningGateway, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                peer: str | None = ANOTHER_MACHINE) -> tuple[int, Any, Any]:
    """(status, headers, parsed JSON body or None) of one HTTP call, from `peer` (None: this machine)."""
    sent = {**headers, **({PEER_HEADER: peer} if peer else {})}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, gw.http_url + path, headers=sent, data=body) as answer:
            raw = await answer.read()
            return answer.status, answer.headers, json.loads(raw) if raw else None


def _function(gw: RunningGateway) -> str:
    return gw.gateway.stack.functions["EchoFunction"].name


SSM_PUT = {"X-Amz-Target": "AmazonSSM.PutParameter", "Content-Type": "application/x-amz-json-1.1"}
PUT_BODY = json.dumps({"Name": "/tests/lan/secret", "Value": "v", "Type": "String"}).encode()


@pytest.mark.parametrize("what, method, path, headers, body", [
    ("@connections with its stage", "POST", "/local/@connections/abc=", _signed("execute-api"), b"hi"),
    ("@connections without a stage", "DELETE", "/@connections/abc=", _signed("execute-api"), b""),
    ("Lambda Invoke", "POST", "/2015-03-31/functions/{function}/invocations", {**_signed("lambda"), "X-Amz-Invocation-Type": "Event"}, b"{}"),
    ("SSM", "POST", "/", {**_signed("ssm"), **SSM_PUT}, PUT_BODY),
    ("SSM unsigned", "POST", "/", SSM_PUT, PUT_BODY),
    ("a forwarded service", "POST", "/", _signed("sqs"), b"Action=ListQueues"),
    ("a forwarded service at the WebSocket path", "GET", "/local", _signed("dynamodb"), b""),
    ("a route added later", "GET", ADDED_LATER, {}, b""),
])
async def test_aws_emulation_from_another_machine_is_refused_with_an_aws_403_and_nothing_runs(
        lan_gw: RunningGateway, what: str, method: str, path: str, headers: dict[str, str], body: bytes):
    runs_before = lan_gw.console.text().count("Invoke")
    status, answered_headers, error = await _call(lan_gw, method, path.format(function=_function(lan_gw)), headers, body)
    assert status == 403, what
    assert error == {"__type": "AccessDeniedException", "message": NOT_FROM_THIS_MACHINE}, what
    assert answered_headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert answered_headers["Content-Type"] == "application/x-amz-json-1.1" and answered_headers["x-amzn-RequestId"]
    await asyncio.sleep(0.2)  # an Event invocation would have started by now
    assert lan_gw.console.text().count("Invoke") == runs_before, "a function ran for the other machine"
    assert lan_gw.gateway.aws.moto is None, "moto was started for the other machine"
    with pytest.raises(Exception, match="not found"):
        lan_gw.call(lambda: lan_gw.gateway.parameter_store.get("/tests/lan/secret"))


async def test_the_same_routes_from_this_machine_pass_through_the_middleware(lan_gw: RunningGateway):
    invoke = f"/2015-03-31/functions/{_function(lan_gw)}/invocations"
    status, _, _ = await _call(lan_gw, "POST", invoke, {**_signed("lambda"), "X-Amz-Invocation-Type": "DryRun"}, b"{}", peer=None)
    assert status == 204
    ssm_get = {**_signed("ssm"), "X-Amz-Target": "AmazonSSM.GetParameter", "Content-Type": "application/x-amz-json-1.1"}
    status, _, error = await _call(lan_gw, "POST", "/", ssm_get, json.dumps({"Name": "/tests/lan/none"}).encode(), peer=None)
    assert (status, error["__type"]) == (400, "ParameterNotFound")
    status, headers, _ = await _call(lan_gw, "POST", "/local/@connections/abc=", _signed("execute-api"), b"hi", peer=None)
    assert (status, headers["x-amzn-ErrorType"]) == (410, "GoneException")
    assert (await _call(lan_gw, "GET", ADDED_LATER, {}, peer=None))[::2] == (200, {"served": True})


async def test_a_client_on_another_machine_connects_and_gets_the_pages_but_cannot_post_to_a_connection(lan_gw: RunningGateway):
    ws = await connect(lan_gw, "", additional_headers={PEER_HEADER: ANOTHER_MACHINE})
    reply = await request(ws, {"action": "echo"})
    assert reply["requestContext"]["identity"]["sourceIp"] == ANOTHER_MACHINE  # the peer the gateway saw
    post = f"/local/@connections/{reply['requestContext']['connectionId']}"
    status, _, error = await _call(lan_gw, "POST", post, _signed("execute-api"), b"from afar")
    assert (status, error["__type"]) == (403, "AccessDeniedException")
    assert (await _call(lan_gw, "POST", post, _signed("execute-api"), b"from here", peer=None))[0] == 200
    assert await asyncio.wait_for(ws.recv(), 5) == "from here"  # the refused post sent nothing before it
    await ws.close()

    status, _, token = await _call(lan_gw, "GET", "/dev/token?user=bob", {})
    assert status == 200 and token["token"]
    status, headers, error = await _call(lan_gw, "GET", "/no/such/path", {})  # API Gateway's own 403, as before
    assert (status, headers["x-amzn-ErrorType"], error) == (403, "ForbiddenException", {"message": "Forbidden"})
    status, _, error = await _call(lan_gw, "GET", "/local", {})  # the WebSocket endpoint without an upgrade
    assert (status, error) == (426, {"message": "Upgrade Required"})



@pytest.mark.parametrize("peer, served", [
    ("192.168.1.20", True),  # a handler on this machine reaching https://{domainName}/{stage} at the LAN address
    ("192.168.1.31", False),  # another machine on the LAN
])
async def test_a_peer_at_the_address_it_connected_to_is_this_machine_for_the_middleware(peer: str, served: bool):
    transport = mock.Mock()
    names = {"peername": (peer, 50123), "sockname": ("192.168.1.20", 3001)}
    transport.get_extra_info.side_effect = lambda key, default=None: names.get(key, default)
    req = make_mocked_request("POST", "/local/@connections/abc=", headers=_signed("execute-api"), transport=transport,
                              app=web.Application())
    handler = mock.AsyncMock(return_value=web.Response(status=200))
    answer = await this_machine_only(req, handler)
    assert handler.called is served and answer.status == (200 if served else 403)


def _token_warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if "/dev/token mints a token for any user to anyone who can reach port" in line]


def test_the_ready_banner_says_who_can_mint_tokens_when_the_port_is_open_to_other_machines(lan_gw: RunningGateway):
    """/dev/token stays served to other machines (the LAN's /ws-test needs it); the banner says so, once."""
    assert _token_warnings(lan_gw.call(lan_gw.gateway.banner)) == []  # 127.0.0.1: this machine only
    for host in ("0.0.0.0", "::", "192.168.1.20", "laptop.local"):
        gateway = Gateway(lan_gw.stack, GatewayConfig(host=host, port=3001), extras=ParleyExtras(lan_gw.record_dir))
        warnings = _token_warnings(gateway.extras.banner(gateway))
        assert warnings == [f"  !!! --host {host}: /dev/token mints a token for any user to anyone who can reach port 3001; "
                            "bind --host 127.0.0.1 unless other machines must connect"], host
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        gateway = Gateway(lan_gw.stack, GatewayConfig(host=host, port=3001), extras=ParleyExtras(lan_gw.record_dir))
        assert _token_warnings(gateway.extras.banner(gateway)) == [], host
