"""The gateway's AWS emulation and the dev tokens answer this machine only; the WebSocket endpoint and the pages answer anyone.

Another machine refused is told what AWS would tell it: an AWS SDK's call (`X-Amz-Target`, SigV4) gets
`AccessDeniedException`, anything else API Gateway's own 403 `{"message":"Forbidden"}`, the very answer
of the gateway's catch-all. `/dev/token` answers another machine only with `--dev-tokens-for-other-machines`.

Over a real gateway on 127.0.0.1 and real sockets; another machine is a caller that names its peer in
a header (`parley_testing.another_machine`). A route is added after `_build_app` returns, as a later
change to the gateway would add one, to show that the default is "this machine only".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator
from unittest import mock

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from parley_local.cli import build_parser, parley_extras_for
from parley_local.gateway.server import Gateway, GatewayConfig
from parley_local.gateway.this_machine_only import NOT_FROM_THIS_MACHINE, this_machine_only
from parley_local.parley_extras import TOKENS_FOR_OTHER_MACHINES, TOKENS_THIS_MACHINE_ONLY, ParleyExtras
from parley_local.tokens import dev_secret
from parley_testing.another_machine import ANOTHER_MACHINE, PEER_HEADER, lan_gateway
from parley_testing.fixture_clients import connect, request
from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway

ADDED_LATER = "/added-later/probe"


def _signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=ab"}


async def _added_later(req: web.Request) -> web.Response:
    return web.json_response({"served": True})


def _lan_gateway(small_gw: RunningGateway, record_dir: Any, stack_name: str, **extras: bool) -> RunningGateway:
    """A started `lan_gateway` whose DynamoDB is small_gw's (so it starts no moto of its own)."""
    return lan_gateway(SMALL_TEMPLATE, record_dir, stack_name=stack_name, prewarm=False,
                       dynamodb_endpoint=small_gw.gateway.aws.dynamodb_endpoint,
                       add_routes=lambda app: app.router.add_get(ADDED_LATER, _added_later), **extras).start()


@pytest.fixture(scope="module")
def lan_gw(small_gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """`parley dev` as it starts by default: dev tokens for this machine only."""
    g = _lan_gateway(small_gw, tmp_path_factory.mktemp("records-lan"), "lan")
    yield g
    g.stop()


@pytest.fixture(scope="module")
def lan_gw_tokens_for_all(small_gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """`parley dev --dev-tokens-for-other-machines`."""
    g = _lan_gateway(small_gw, tmp_path_factory.mktemp("records-lan-tokens"), "lantokens", tokens_for_other_machines=True)
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
    ("a route added later, signed", "GET", ADDED_LATER, _signed("execute-api"), b""),
    ("@connections presigned", "GET", "/local/@connections/abc=?X-Amz-Credential=AKID/20261129/us-east-1/execute-api/aws4_request"
                                      "&X-Amz-Signature=ab", {}, b""),
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


def _shape(answer: tuple[int, Any, Any]) -> tuple[int, str | None, str | None, Any]:
    status, headers, body = answer
    return status, headers.get("Content-Type"), headers.get("x-amzn-ErrorType"), body


@pytest.mark.parametrize("what, method, path, headers, body", [
    ("a plain POST / (not an SSM or DynamoDB call)", "POST", "/", {"Content-Type": "application/json"}, b'{"a": 1}'),
    ("a route added later", "GET", ADDED_LATER, {}, b""),
    ("Lambda's Invoke path, unsigned", "POST", "/2015-03-31/functions/{function}/invocations", {"X-Amz-Invocation-Type": "Event"}, b"{}"),
    ("@connections, unsigned", "POST", "/local/@connections/abc=", {}, b"hi"),
    ("a bearer token is no AWS signature", "GET", "/@connections/abc=", {"Authorization": "Bearer abc"}, b""),
])
async def test_another_machines_plain_http_call_to_a_refused_route_gets_the_catch_alls_forbidden_and_nothing_runs(
        lan_gw: RunningGateway, what: str, method: str, path: str, headers: dict[str, str], body: bytes):
    """What a browser or curl on the LAN sees is API Gateway's surface: a refused route answers exactly as a path
    API Gateway has no route for (the catch-all's answer, asked from this machine), with no hint of AWS emulation."""
    catch_all = _shape(await _call(lan_gw, "GET", "/no/such/path", {}, peer=None))
    assert catch_all == (403, "application/json; charset=utf-8", "ForbiddenException", {"message": "Forbidden"})
    runs_before = lan_gw.console.text().count("Invoke")
    assert _shape(await _call(lan_gw, method, path.format(function=_function(lan_gw)), headers, body)) == catch_all, what
    await asyncio.sleep(0.2)  # an Event invocation would have started by now
    assert lan_gw.console.text().count("Invoke") == runs_before, "a function ran for the other machine"


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


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, dev_secret(), algorithms=["HS256"], options={"verify_aud": False})


async def test_by_default_dev_tokens_answer_this_machine_and_tell_another_machine_what_to_do(lan_gw: RunningGateway):
    status, _, answer = await _call(lan_gw, "GET", "/dev/token?user=bob&name=Bob", {}, peer=None)
    assert status == 200 and _claims(answer["token"])["sub"] == "bob"

    for query in ("?user=mallory&name=Admin", ""):  # refused before the query is looked at
        status, headers, answer = await _call(lan_gw, "GET", "/dev/token" + query, {})
        assert (status, answer) == (403, {"message": TOKENS_THIS_MACHINE_ONLY}), query
        assert headers["Access-Control-Allow-Origin"] == "*"  # a page on another machine can read why
    assert "`parley token USER`" in TOKENS_THIS_MACHINE_ONLY and TOKENS_FOR_OTHER_MACHINES in TOKENS_THIS_MACHINE_ONLY


async def test_with_the_opt_in_another_machine_gets_dev_tokens_and_the_rest_stays_this_machine_only(
        lan_gw_tokens_for_all: RunningGateway):
    gw = lan_gw_tokens_for_all
    for peer in (ANOTHER_MACHINE, None):
        status, headers, answer = await _call(gw, "GET", "/dev/token?user=carol&name=Carol", {}, peer=peer)
        assert status == 200 and _claims(answer["token"])["sub"] == "carol", peer
        assert headers["Access-Control-Allow-Origin"] == "*"
    status, _, answer = await _call(gw, "GET", "/dev/token", {})  # the usual checks still apply
    assert (status, answer) == (400, {"message": "query parameter user (1..128 chars) is required"})
    status, _, answer = await _call(gw, "POST", "/local/@connections/abc=", _signed("execute-api"), b"hi")
    assert (status, answer["__type"]) == (403, "AccessDeniedException")


def _token_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "/dev/token" in line or "Dev tokens:" in line]


def _banner_of(gw: RunningGateway, host: str, **extras: bool) -> list[str]:
    gateway = Gateway(gw.stack, GatewayConfig(host=host, port=3001), extras=ParleyExtras(gw.record_dir, **extras))
    assert gateway.extras is not None
    return _token_lines(gateway.extras.banner(gateway))


GET_A_TOKEN = "Get a token:   parley token alice            (or GET http://{host}:3001/dev/token?user=alice&name=Alice)"


@pytest.mark.parametrize("host, url_host", [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("192.168.1.20", "192.168.1.20"),
                                            ("laptop.local", "laptop.local")])
def test_the_ready_banner_says_who_gets_dev_tokens_when_other_machines_reach_the_port(lan_gw: RunningGateway, host: str, url_host: str):
    get = GET_A_TOKEN.format(host=url_host)
    assert _banner_of(lan_gw, host) == [
        get, f"  Dev tokens:    this machine only (--host {host} opens the WebSocket and the pages, not /dev/token): "
             "other machines use `parley token USER` from here, or restart with --dev-tokens-for-other-machines"]
    assert _banner_of(lan_gw, host, tokens_for_other_machines=True) == [
        get, "  !!! --dev-tokens-for-other-machines: /dev/token mints a token for any user to anyone who can reach "
             f"port 3001 (--host {host}); drop the flag unless pages on other machines need it"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_the_ready_banner_says_the_opt_in_changes_nothing_when_only_this_machine_reaches_the_port(lan_gw: RunningGateway, host: str):
    get = GET_A_TOKEN.format(host=f"[{host}]" if ":" in host else host)
    assert _banner_of(lan_gw, host) == [get]
    assert _banner_of(lan_gw, host, tokens_for_other_machines=True) == [
        get, f"  Dev tokens:    this machine only: only this machine reaches --host {host}, so --dev-tokens-for-other-machines "
             "changes nothing"]


@pytest.mark.parametrize("argv, opted_in", [
    (["dev", "--host", "0.0.0.0"], False),
    (["dev", "--host", "0.0.0.0", TOKENS_FOR_OTHER_MACHINES], True),
    (["dev", TOKENS_FOR_OTHER_MACHINES, "--port", "0"], True),
])
def test_parley_dev_reads_the_opt_in_into_the_extras_it_runs(argv: list[str], opted_in: bool):
    args = build_parser().parse_args(argv)
    assert parley_extras_for(args, SMALL_TEMPLATE).tokens_for_other_machines is opted_in


def test_parley_dev_help_documents_the_opt_in():
    dev = build_parser()._subparsers._group_actions[0].choices["dev"]  # type: ignore[union-attr]
    text = " ".join(dev.format_help().split())
    assert TOKENS_FOR_OTHER_MACHINES in text and "anyone who can reach the port can then get a token for any user" in text
