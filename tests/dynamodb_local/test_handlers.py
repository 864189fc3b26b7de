"""The real template.yaml and handlers through the local gateway, on AWS's DynamoDB Local.

Every DynamoDB call the handlers make runs against DynamoDB Local here: PutItem (connection,
membership, message, idempotency record), conditional PutItem and UpdateItem (clientMessageId,
read cursor), UpdateItem ADD (rate counters), GetItem, DeleteItem with ALL_OLD, Query of a room
and of `ByConnection`, BatchWriteItem (disconnect clean-up). The tables are then read back
with Queries (no Scan) to check what was written.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest

from parley_testing.chat_client import Client
from parley_testing.gateway_thread import RunningGateway
from parley_testing.template import ROOT

TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def local_gw(dynamodb_local: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """`parley dev`'s gateway with its own DynamoDB Local (the `dynamodb_local` fixture proves one can start)."""
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-ddblocal"), stack_name="ddbl", prewarm=False, dynamodb="local").start()
    yield g
    g.stop()


def _query(ddb: Any, table: str, key: str, value: str, index: str | None = None) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"TableName": table, "KeyConditionExpression": f"{key} = :v", "ExpressionAttributeValues": {":v": {"S": value}}}
    if index:
        args["IndexName"] = index
    return [item for page in ddb.get_paginator("query").paginate(**args) for item in page["Items"]]


async def test_chat_round_trip_on_dynamodb_local(local_gw: RunningGateway):
    aws = local_gw.gateway.aws
    assert aws is not None and aws.dynamodb_local is not None and aws.dynamodb_endpoint == aws.dynamodb_local.endpoint
    ddb = aws.client("dynamodb")
    names = {t.logical_id: t.name for t in local_gw.stack.tables}
    room = f"room-{time.time_ns()}"
    alice = await Client.open(local_gw, "alice", "Alice")
    bob = await Client.open(local_gw, "bob", "Bob")

    await alice.send("join_room", roomId=room)
    await alice.expect("participants_list")
    await alice.expect("chat_history")
    await bob.send("join_room", roomId=room)
    assert {p["userId"] for p in (await bob.expect("participants_list"))["participants"]} == {"alice", "bob"}
    await bob.expect("chat_history")

    await alice.send("chat_message", roomId=room, message="hello", clientMessageId="c-1")
    await alice.expect("chat_update", lambda d: d["status"] == "delivered")
    received = await bob.expect("message_received")
    first = await alice.expect("message_received")
    await alice.send("chat_message", roomId=room, message="hello", clientMessageId="c-1")  # a retry: found by its record
    assert (await alice.expect("message_received"))["messageId"] == first["messageId"] == received["messageId"]
    # The room is told again (the first attempt may have told nobody): the same message, nothing new stored.
    assert (await bob.expect("message_received"))["messageId"] == received["messageId"]
    await bob.quiet("message_received", 1.0)
    stored = _query(ddb, names["MessagesTable"], "roomId", room)
    assert [item["messageId"]["S"] for item in stored] == [received["messageId"]]

    await bob.send("mark_read", roomId=room, messageId=received["messageId"])
    await alice.expect("chat_update", lambda d: d["status"] == "read")
    await bob.send("mark_read", roomId=room, messageId=received["messageId"])  # not forward: condition fails, no echo
    await alice.quiet("chat_update", 1.0)
    await bob.send("get_history", roomId=room)
    assert [m["message"] for m in (await bob.expect("chat_history"))["messages"]] == ["hello"]

    bob_id = {item["userId"]["S"]: item["connectionId"]["S"] for item in _query(ddb, names["MembershipsTable"], "roomId", room)
              if "connectionId" in item}["bob"]
    await bob.send("leave_room", roomId=room)
    await alice.expect("user_left", lambda d: d["userId"] == "bob")
    await alice.ws.close()
    await bob.ws.close()

    async def cleaned_up() -> bool:
        while True:
            members = _query(ddb, names["MembershipsTable"], "roomId", room)
            if not [m for m in members if m["memberKey"]["S"].startswith("c#")]:
                return True
            await asyncio.sleep(0.1)

    await asyncio.wait_for(cleaned_up(), 20)  # alice's $disconnect: Query ByConnection, then her membership's clean-up
    assert _query(ddb, names["MembershipsTable"], "connectionId", bob_id, index="ByConnection") == []
    cursors = [m for m in _query(ddb, names["MembershipsTable"], "roomId", room) if m["memberKey"]["S"].startswith("r#")]
    # Reader items outlive memberships: join made one per user (get_rooms lists the room), and
    # only bob's holds a read cursor.
    assert {c["memberKey"]["S"]: c.get("messageId", {}).get("S") for c in cursors} == {
        "r#alice": None, "r#bob": received["messageId"]}


async def test_a_deletion_made_while_away_reaches_the_rejoin_over_real_sockets(local_gw: RunningGateway):
    """PROTOCOL "Reconnecting": bob's socket closes, alice deletes a message bob holds (older than
    his rejoin's since), and his rejoin's chat_history brings its tombstone in `changed`: the change
    time written by the delete's UpdateItem, the ByChange index on DynamoDB Local, the join's Query."""
    room = f"room-{time.time_ns()}"
    alice = await Client.open(local_gw, "alice", "Alice")
    bob = await Client.open(local_gw, "bob", "Bob")
    for client in (alice, bob):
        await client.send("join_room", roomId=room)
        await client.expect("chat_history")
    await alice.send("chat_message", roomId=room, message="regret")
    held = await bob.expect("message_received")
    await bob.ws.close()
    await alice.send("delete_message", roomId=room, messageId=held["messageId"])
    await alice.expect("message_deleted")

    back = await Client.open(local_gw, "bob", "Bob")
    await back.send("join_room", roomId=room, since=held["messageId"])
    history = await back.expect("chat_history")
    assert history["messages"] == [] and history["moreChanged"] is False
    [tombstone] = history["changed"]
    assert (tombstone["messageId"], tombstone["deleted"], tombstone["deletedBy"], tombstone["version"]) == (held["messageId"], True, "alice", 2)
    await alice.ws.close()
    await back.ws.close()
