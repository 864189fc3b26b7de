"""`parley dev --host ::1`: the gateway's own URLs (the banner's, and the endpoints its functions get)
write an IPv6 address in brackets, so clients connect and handlers reach `@connections`."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from parley_testing.fixture_clients import connect, request
from parley_testing.gateway_thread import MAIN_TEMPLATE, RunningGateway
from parley_testing.ports import ipv6_loopback_available

pytestmark = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")


@pytest.fixture(scope="module")
def ipv6_gw(small_gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(MAIN_TEMPLATE, tmp_path_factory.mktemp("records-ipv6"), stack_name="ipv6", prewarm=False,
                       dynamodb_endpoint=small_gw.gateway.aws.dynamodb_endpoint)
    g.gateway.config.host = "::1"  # IPv6 loopback: still this machine only
    g.start()
    yield g
    g.stop()


async def test_urls_bracket_the_address_and_a_handler_posts_through_them(ipv6_gw: RunningGateway):
    port = ipv6_gw.gateway.port
    assert ipv6_gw.gateway.http_url == f"http://[::1]:{port}"
    assert ipv6_gw.gateway.ws_url == f"ws://[::1]:{port}/local"
    ws = await connect(ipv6_gw)
    reply = await request(ws, {"action": "echo"})
    assert reply["requestContext"]["identity"]["sourceIp"] == "::1"
    await ws.send('{"action": "post", "text": "through the handler"}')  # boto3 in the worker, via AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
    frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]  # the post, and the route response
    assert sorted(frames) == sorted(["through the handler", '{"result": "ok"}']), frames
    await ws.close()
