"""A room larger than one page through `parley dev`: the real template with the smallest
`FanoutPageSize` and `FanoutShardSize`, so `chat_message` reads one page, dispatches its shards and
hands the rest of the room to a continuation in `FanoutFunction` (over the local Lambda Invoke API),
which reads the remaining pages and invokes their shards; every member gets the message once."""

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

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
PAGE = SHARD = 10  # the template's MinValues
MEMBERS = 3 * PAGE + 4  # the handler's page, then a continuation of three pages (10, 10, 4)

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason="needs the real template.yaml")


@pytest.fixture(scope="module")
def paged_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-paged"), stack_name="parley", prewarm=False,
                       overrides={"FanoutShardSize": str(SHARD), "FanoutPageSize": str(PAGE)}).start()
    assert g.gateway.lambda_api is not None
    g.gateway.lambda_api.retry_delays_s = (0.05, 0.05)
    yield g
    g.stop()


async def test_a_room_beyond_one_page_is_delivered_to_every_member_once(paged_gw: RunningGateway):
    room = f"paged-{time.time_ns()}"
    clients = await joined_clients(paged_gw, room, MEMBERS, "p")
    sender = clients[-1]
    await sender.send("chat_message", roomId=room, message="to every page", clientMessageId="paged-1")
    update = await sender.expect("chat_update", timeout=30)
    # Beyond one page the handler does not read the whole room: the size counter (users) says.
    assert update["status"] == "sent" and update["recipients"] == MEMBERS - 1
    got = await asyncio.gather(*(c.expect("message_received", lambda d: d["roomId"] == room, timeout=60) for c in clients))
    assert {g["messageId"] for g in got} == {update["messageId"]}
    await asyncio.gather(*(c.quiet("message_received", 1.5) for c in clients))  # and nobody twice
    text = paged_gw.console.text()
    assert "FanoutFunction" in text and "not queued" not in text
    for c in clients:
        await c.ws.close()


async def test_a_burst_from_one_sender_reaches_every_member_of_a_paged_room_once_each(paged_gw: RunningGateway):
    """Five messages sent back to back, without waiting for answers: each one is its own handler
    run, page, continuation and shards, all in flight together, and the burst crosses the rate
    counter's batch (the fifth frame writes it). Every member gets each message exactly once."""
    room = f"burst-{time.time_ns()}"
    clients = await joined_clients(paged_gw, room, MEMBERS, "b")
    sender = clients[-1]
    for n in range(5):
        await sender.send("chat_message", roomId=room, message=f"burst {n}", clientMessageId=f"burst-{n}")
    sent = [await sender.expect("chat_update", lambda d: d["roomId"] == room, timeout=30) for _ in range(5)]
    assert {u["status"] for u in sent} == {"sent"} and len({u["messageId"] for u in sent}) == 5

    async def five(client) -> set[str]:
        return {(await client.expect("message_received", lambda d: d["roomId"] == room, timeout=60))["messageId"]
                for _ in range(5)}

    assert all(got == {u["messageId"] for u in sent} for got in await asyncio.gather(*(five(c) for c in clients)))
    await asyncio.gather(*(c.quiet("message_received", 1.5) for c in clients))  # and nobody twice
    for c in clients:
        await c.ws.close()


def test_a_forged_continuation_is_refused_without_reading_or_posting(paged_gw: RunningGateway):
    client = boto3.client("lambda", endpoint_url=paged_gw.http_url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}, read_timeout=30))
    forged = {"continueAfter": "x\"} OR {", "roomId": "lobby", "deliveryId": "01JDQ3VY9Z8X7W6V5T4S3R2Q1P",
              "firstShard": 1, "frame": json.dumps({"type": "message_received", "data": {}})}
    out = client.invoke(FunctionName=paged_gw.stack.functions["FanoutFunction"].name, InvocationType="RequestResponse",
                        Payload=json.dumps(forged).encode())
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "BadFanoutEvent" and "continueAfter" in error["errorMessage"]
