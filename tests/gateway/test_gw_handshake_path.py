"""The handshake path's cheaper code paths give the answers the slower ones gave.

`front_door` (the gateway's one middleware): a request all three checks pass is handed the route
handler's own coroutine; any other gets the size limits', `this_machine_only`'s or `other_services`'
answer. `connection_info`: the single and multi views of repeated headers and query parameters.
`LogCopy`: a function's log, read in chunks, comes out line by line, in order, live. And a
running gateway keeps start-up's objects out of the garbage collector's walks (`gc.freeze`) and
collects its young generation less often.
The gateway over real sockets covers the same paths end to end (test_gw_this_machine_only,
test_third_party_templates' 414/431, test_gw_websocket's events and console).
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from parley_local.gateway.console import FLUSH_AFTER_S, Console, LogCopy
from parley_local.gateway.events import ConnectionInfo, authorizer_event, aws_id, connect_event
from parley_local.gateway.front_door import front_door
from parley_local.gateway.handshake import connection_info
from parley_local.gateway.collector import SERVING_COLLECTOR, YOUNG_COLLECTION_EVERY, ServingCollector
from parley_local.gateway.this_machine_only import NOT_FROM_THIS_MACHINE, OPEN_ROUTES
from parley_local.local_aws.other_services import OtherAwsServices
from parley_testing.gateway_thread import SMALL_TEMPLATE, ListConsole, RunningGateway

ANOTHER_MACHINE = "192.0.2.7"


def _signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=ab"}


def _request(peer: str, path: str = "/local", headers: Any = None, method: str = "GET", open_route: bool = False) -> web.Request:
    transport = mock.Mock()
    names = {"peername": (peer, 50123), "sockname": ("127.0.0.1", 3001)}
    transport.get_extra_info.side_effect = lambda key, default=None: names.get(key, default)
    app = web.Application()
    request = make_mocked_request(method, path, headers=headers or {}, transport=transport, app=app, match_info={})
    if open_route:
        app[OPEN_ROUTES] = {request.match_info.route}
    return request


@pytest.fixture
def forwarder() -> OtherAwsServices:
    services = OtherAwsServices(mock.Mock(), announce=mock.Mock())
    services._endpoint = mock.AsyncMock(return_value="http://127.0.0.1:9")  # type: ignore[method-assign]
    services._forward = mock.AsyncMock(return_value=web.Response(status=299, text="forwarded"))  # type: ignore[method-assign]
    return services


@pytest.mark.parametrize("peer, open_route", [("127.0.0.1", False), ("::1", True), (ANOTHER_MACHINE, True)])
async def test_a_request_every_check_passes_gets_the_handlers_own_coroutine(forwarder: OtherAwsServices, peer: str,
                                                                            open_route: bool):
    answer = web.Response(status=101)
    handler = mock.AsyncMock(return_value=answer)
    request = _request(peer, "/local?token=t", {"Upgrade": "websocket"}, open_route=open_route)
    awaitable = front_door(forwarder)(request, handler)
    handler.assert_called_once_with(request)  # called directly: what it returned is what aiohttp awaits
    assert await awaitable is answer
    forwarder._forward.assert_not_called()


async def _answer(forwarder: OtherAwsServices, request: web.Request) -> tuple[web.StreamResponse, mock.AsyncMock]:
    handler = mock.AsyncMock(return_value=web.Response(status=200, text="handled"))
    return await front_door(forwarder)(request, handler), handler


async def test_an_oversized_url_or_header_block_gets_the_size_limits_answer(forwarder: OtherAwsServices):
    answer, handler = await _answer(forwarder, _request("127.0.0.1", "/local?token=" + "x" * 8200, open_route=True))
    assert answer.status == 414 and json.loads(answer.text)["message"].startswith("Request-URI Too Long: 8213 bytes")
    answer, _ = await _answer(forwarder, _request("127.0.0.1", headers={"X-Big": "y" * 10300}, open_route=True))
    assert answer.status == 431
    assert not handler.called and not forwarder._forward.called


async def test_another_machine_on_a_closed_route_gets_the_refusal_for_its_kind_of_caller(forwarder: OtherAwsServices):
    answer, handler = await _answer(forwarder, _request(ANOTHER_MACHINE, "/local/@connections/abc="))
    assert (answer.status, answer.headers["x-amzn-ErrorType"], json.loads(answer.text)) == (
        403, "ForbiddenException", {"message": "Forbidden"})
    answer, _ = await _answer(forwarder, _request(ANOTHER_MACHINE, "/", {"X-Amz-Target": "AmazonSSM.GetParameter"}, "POST"))
    assert (answer.status, json.loads(answer.text)) == (403, {"__type": "AccessDeniedException", "message": NOT_FROM_THIS_MACHINE})
    assert not handler.called


async def test_a_call_signed_for_another_service_is_forwarded_from_here_and_refused_from_elsewhere(forwarder: OtherAwsServices):
    answer, handler = await _answer(forwarder, _request("127.0.0.1", "/", _signed("sqs"), "POST"))
    assert (answer.status, answer.text) == (299, "forwarded") and not handler.called
    answer, _ = await _answer(forwarder, _request(ANOTHER_MACHINE, "/local", _signed("sqs"), "POST", open_route=True))
    assert answer.status == 403 and json.loads(answer.text)["__type"] == "AccessDeniedException"
    assert forwarder._forward.call_count == 1
    answer, handler = await _answer(forwarder, _request("127.0.0.1", "/", _signed("ssm"), "POST"))  # the gateway's own
    assert answer.text == "handled" and forwarder._forward.call_count == 1


def test_repeated_headers_and_query_parameters_keep_the_last_value_and_all_values_in_order():
    headers = CIMultiDict([("Host", "127.0.0.1:3001"), ("X-Tag", "a"), ("Upgrade", "websocket"), ("X-Tag", "b"),
                           ("x-tag", "c")])
    request = make_mocked_request("GET", "/local?token=t&x=1&y=2&x=3", headers=headers, match_info={})
    info = connection_info(request, "abcdefghij", "local", 3001)
    assert list(info.headers)[:4] == ["Host", "X-Tag", "Upgrade", "x-tag"]  # first place, last value, names as sent
    assert (info.headers["X-Tag"], info.multi_value_headers["X-Tag"]) == ("b", ["a", "b"])
    assert (info.headers["x-tag"], info.multi_value_headers["x-tag"]) == ("c", ["c"])
    assert info.multi_value_headers["Upgrade"] == ["websocket"]
    assert info.query == {"token": "t", "x": "3", "y": "2"} and list(info.query) == ["token", "x", "y"]
    assert info.multi_value_query == {"token": ["t"], "x": ["1", "3"], "y": ["2"]}
    assert info.headers["X-Forwarded-Port"].isdigit() and info.multi_value_headers["X-Forwarded-For"] == [info.source_ip]
    assert list(info.headers) == list(info.multi_value_headers)
    event = connect_event(info, aws_id())
    assert event["multiValueHeaders"] is info.multi_value_headers and event["multiValueQueryStringParameters"]["x"] == ["1", "3"]


def test_without_repeated_names_the_multi_value_views_are_derived_when_an_event_is_built():
    request = make_mocked_request("GET", "/local?token=t&y=2", headers={"Host": "h", "Upgrade": "websocket"}, match_info={})
    info = connection_info(request, "abcdefghij", "local", 3001)
    assert info.multi_value_headers is None and info.multi_value_query is None  # nothing kept for the socket's life
    for event in (connect_event(info, aws_id()), authorizer_event(info, aws_id())):
        assert event["multiValueHeaders"] == {k: [v] for k, v in info.headers.items()}
        assert list(event["multiValueHeaders"]) == list(info.headers)[:2] + [
            "X-Amzn-Trace-Id", "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"]
        assert event["multiValueQueryStringParameters"] == {"token": ["t"], "y": ["2"]}
    plain = connection_info(make_mocked_request("GET", "/local", headers={"Host": "h"}, match_info={}), "a", "local", 1)
    assert plain.query is None and plain.multi_value_query is None
    assert "multiValueQueryStringParameters" not in connect_event(plain, aws_id())


def _info(**kw: Any) -> ConnectionInfo:
    return ConnectionInfo(connection_id=aws_id(), api_id="abcdefghij", stage="local", domain_name="h", source_ip="127.0.0.1",
                          user_agent="ua", connected_at=1731324924000, headers={"Host": "h"}, multi_value_headers={"Host": ["h"]},
                          **kw)


def test_connect_and_authorizer_events_keep_their_fields_in_aws_order():
    with_query = _info(query={"token": "t"}, multi_value_query={"token": ["t"]})
    assert list(connect_event(with_query, aws_id())) == [
        "headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters", "requestContext",
        "isBase64Encoded"]
    assert list(connect_event(_info(), aws_id())) == ["headers", "multiValueHeaders", "requestContext", "isBase64Encoded"]
    auth = authorizer_event(with_query, "req-1")
    assert list(auth) == ["type", "methodArn", "headers", "multiValueHeaders", "queryStringParameters",
                          "multiValueQueryStringParameters", "requestContext", "stageVariables"]
    assert auth["requestContext"]["eventType"] == "CONNECT" and auth["requestContext"]["requestId"] == "req-1"
    assert auth["multiValueQueryStringParameters"] == {"token": ["t"]} and auth["stageVariables"] == {}


async def _until(predicate: Any) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0.01)


def test_a_functions_log_comes_out_line_by_line_in_order_as_it_arrives():
    console = ListConsole()
    copy = LogCopy(console, "[Fn] ", line_limit=1000)
    copy.feed(b'{"level":"INFO","n":1}\n{"level":"INFO","n":2}\npart')
    assert console.lines == ['[Fn] {"level":"INFO","n":1}', '[Fn] {"level":"INFO","n":2}']  # live: before the end
    copy.feed(b"ial line\r\n\xff bad utf-8\n\n")
    assert console.lines[2:] == ["[Fn] partial line\r", "[Fn] \ufffd bad utf-8", "[Fn] "]
    copy.feed(b"last, without a newline")
    copy.end()
    assert console.lines[5:] == ["[Fn] last, without a newline"]


def test_a_log_line_over_the_limit_ends_the_copy():
    console = ListConsole()
    copy = LogCopy(console, "", line_limit=100)
    copy.feed(b"ok\n" + b"x" * 50)
    copy.feed(b"y" * 60)
    copy.feed(b"\nmore\n")
    copy.end()
    assert console.lines == ["ok"]


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_log_lines_are_written_through_the_consoles_stream_one_write_per_read():
    """A storm's `$connect` logs a line per connection: what one read brings is written at once, each line prefixed."""
    out = _CountingStream()
    copy = LogCopy(Console(stream=out), "[Fn] ", line_limit=100)
    copy.feed(b"a\nb\xe2\x82")  # a line, then one cut inside a UTF-8 character
    assert out.writes == 1
    copy.feed(b"\xac\r\n\xff\n\nc\nd")
    copy.end()
    assert out.getvalue() == "[Fn] a\n[Fn] b\u20ac\r\n[Fn] \ufffd\n[Fn] \n[Fn] c\n[Fn] d\n"
    assert out.writes == 3  # one per read with whole lines in it, one for the last line without a newline


def test_a_running_gateway_keeps_what_start_up_made_out_of_the_collectors_walks_until_it_stops(tmp_path: Any):
    before, others = gc.get_threshold(), SERVING_COLLECTOR.serving  # the session's gateways may be serving
    gateway = RunningGateway(SMALL_TEMPLATE, tmp_path, prewarm=False, stream_events=False, reload=False).start()
    try:
        assert gc.get_freeze_count() > 10_000  # modules, botocore's models, the template: frozen once serving
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY  # young collections 10x rarer
        assert SERVING_COLLECTOR.serving == others + 1
    finally:
        gateway.stop()
    assert SERVING_COLLECTOR.serving == others
    assert gc.get_threshold() == before
    if not others:
        assert gc.get_freeze_count() == 0  # given back: what a stopped gateway leaves is collected as usual


def test_a_gateway_that_stops_while_another_serves_leaves_the_collector_tuned_for_it(tmp_path: Any):
    before, others = gc.get_threshold(), SERVING_COLLECTOR.serving
    first = RunningGateway(SMALL_TEMPLATE, tmp_path / "a", prewarm=False, stream_events=False, reload=False).start()
    try:
        second = RunningGateway(SMALL_TEMPLATE, tmp_path / "b", prewarm=False, stream_events=False, reload=False).start()
    finally:
        first.stop()
    try:
        assert gc.get_freeze_count() > 10_000  # the second still serves: nothing handed back yet
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
    finally:
        second.stop()
    assert gc.get_threshold() == before  # the one the first found, not the raised one the second found
    if not others:
        assert gc.get_freeze_count() == 0


class _CollectorStandIn:
    """The calls a `ServingCollector` makes, on a collector of its own (this process's is the gateways')."""

    def __init__(self) -> None:
        self.threshold, self.frozen, self.freezes = (700, 10, 10), False, 0

    def freeze(self) -> None:
        self.frozen, self.freezes = True, self.freezes + 1

    def unfreeze(self) -> None:
        self.frozen = False

    def get_threshold(self) -> tuple[int, ...]:
        return self.threshold

    def set_threshold(self, *threshold: int) -> None:
        self.threshold = threshold


def test_the_collector_is_given_back_when_the_last_of_several_gateways_stops():
    stand_in = _CollectorStandIn()
    serving = ServingCollector(stand_in)
    serving.gateway_started()
    serving.gateway_started()  # a second gateway, started while the first serves: its start-up frozen too
    assert (stand_in.freezes, stand_in.threshold) == (2, (YOUNG_COLLECTION_EVERY, 10, 10))
    serving.gateway_stopped()
    assert stand_in.frozen and stand_in.threshold == (YOUNG_COLLECTION_EVERY, 10, 10)
    serving.gateway_stopped()
    assert not stand_in.frozen and stand_in.threshold == (700, 10, 10)
    serving.gateway_started()  # serving again later: tuned again from the thresholds it finds now
    assert stand_in.frozen and stand_in.threshold == (YOUNG_COLLECTION_EVERY, 10, 10)


def test_a_stop_without_a_start_is_refused_and_changes_nothing():
    stand_in = _CollectorStandIn()
    serving = ServingCollector(stand_in)
    with pytest.raises(RuntimeError, match="without a gateway_started"):
        serving.gateway_stopped()
    assert (serving.serving, stand_in.frozen, stand_in.threshold) == (0, False, (700, 10, 10))


class _FlushCountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_lines_of_many_loop_turns_share_a_flush_and_still_come_out_promptly():
    """A handshake storm writes lines in turn after turn: one flush (a system call) per turn was two or three per
    handshake. Lines are flushed together FLUSH_AFTER_S after the first, and an explicit flush writes them at once."""
    out = _FlushCountingStream()
    console = Console(stream=out)

    async def storm() -> int:
        for n in range(100):  # a hundred turns of the loop, each with a line
            console.line(f"line {n}")
            await asyncio.sleep(0)
        during = out.flushes
        await asyncio.sleep(FLUSH_AFTER_S * 5)
        return during

    during = asyncio.run(storm())
    assert during <= 1 and out.flushes >= 1  # not one per turn, and the lines did go out
    assert out.getvalue().count("\n") == 100
    before = out.flushes
    console.flush()
    assert out.flushes == before + 1
