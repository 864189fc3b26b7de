"""The local Lambda Invoke API: Parley's real template with a small `FanoutShardSize`, so a
`chat_message` is delivered by `FanoutFunction` shards invoked asynchronously over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.config import Config

from parley_testing.chat_client import joined_clients
from parley_testing.gateway_thread import RunningGateway
from parley_testing.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SHARD_SIZE = 10  # the template's MinValue
MEMBERS = 2 * SHARD_SIZE + 3  # three shards: two full, one of three

pytestmark = pytest.mark.skipif(
    not (TEMPLATE.exists() and (REPO / "functions/fanout/app.py").exists()),
    reason="needs the real template.yaml with FanoutFunction",
)


@pytest.fixture(scope="module")
def sharded_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-invoke"), stack_name="parley", prewarm=False,
                       overrides={"FanoutShardSize": str(SHARD_SIZE)}).start()
    assert g.gateway.lambda_api is not None
    g.gateway.lambda_api.retry_delays_s = (0.05, 0.05)
    yield g
    g.stop()


def _lambda(gw: RunningGateway):
    return boto3.client("lambda", endpoint_url=gw.http_url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=30))


async def test_sharded_chat_message_reaches_every_member_once(sharded_gw: RunningGateway):
    room = f"big-{time.time_ns()}"
    clients = await joined_clients(sharded_gw, room, MEMBERS, "u")
    sender = clients[0]
    await sender.send("chat_message", roomId=room, message="to the whole room", clientMessageId="big-1")
    update = await sender.expect("chat_update", timeout=30)
    assert update["status"] == "sent" and update["recipients"] == MEMBERS - 1
    got = await asyncio.gather(*(c.expect("message_received", lambda d: d["roomId"] == room, timeout=30) for c in clients))
    assert {g["messageId"] for g in got} == {update["messageId"]}
    assert all(g["message"] == "to the whole room" for g in got)
    await asyncio.gather(*(c.quiet("message_received", 1.5) for c in clients))
    # The shards ran in FanoutFunction's own environments, not in chat_message's fallback.
    assert "FanoutFunction" in sharded_gw.console.text()
    assert "not queued" not in sharded_gw.console.text()
    for c in clients:
        await c.ws.close()


def test_invoke_names_resolve_like_aws(sharded_gw: RunningGateway):
    client = _lambda(sharded_gw)
    spec = sharded_gw.stack.functions["FanoutFunction"]
    for name in (spec.name, spec.arn, spec.arn.split(":", 4)[4]):
        out = client.invoke(FunctionName=name, InvocationType="DryRun")
        assert out["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", InvocationType="Event", Payload=b"{}")
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName=spec.name, InvocationType="Event", Payload=b"not json")


def test_request_response_reports_a_function_error(sharded_gw: RunningGateway):
    out = _lambda(sharded_gw).invoke(FunctionName=sharded_gw.stack.functions["FanoutFunction"].name,
                                     InvocationType="RequestResponse", Payload=b'{"not": "a shard"}')
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    assert "errorType" in json.loads(out["Payload"].read())


def test_failed_event_is_retried_twice_then_reported(sharded_gw: RunningGateway):
    api = sharded_gw.gateway.lambda_api
    assert api is not None
    before = len(api.failed_events)
    out = _lambda(sharded_gw).invoke(FunctionName=sharded_gw.stack.functions["FanoutFunction"].name,
                                     InvocationType="Event", Payload=b'{"bad": "shard"}')
    assert out["StatusCode"] == 202
    request_id = out["ResponseMetadata"]["RequestId"]
    failed = wait_for(lambda: [e for e in api.failed_events[before:] if e["requestContext"]["requestId"] == request_id],
                      30, what="the failed event")
    assert failed[0]["requestPayload"] == {"bad": "shard"} and failed[0]["requestContext"]["approximateInvokeCount"] == 3
    text = sharded_gw.console.text()
    assert all(f"{request_id} failed (attempt {n} of 3)" in text for n in (1, 2, 3))
    assert f"{request_id} FAILED after 3 attempts" in text
