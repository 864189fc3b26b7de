"""Issue 13 through `parley dev`'s gateway, the real template and handlers, over real sockets:
the `rooms` claim travels from the authorizer to every route, a malformed one is a 401 at the
handshake, and edit/delete/react/get_rooms work end to end."""

from __future__ import annotations

import json
import time
from typing import Iterator

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from parley_local.tokens import make_token
from parley_testing.gateway_thread import RunningGateway
from parley_testing.chat_client import Client
from parley_testing.template import TEMPLATE


@pytest.fixture(scope="module")
def rooms_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = RunningGateway(TEMPLATE, tmp_path_factory.mktemp("records-rooms"), stack_name="parley", prewarm=False).start()
    yield g
    g.stop()


async def open_with(gw: RunningGateway, user: str, rooms: dict | None) -> Client:
    token = make_token(user, user, 600, rooms=json.dumps(rooms) if rooms is not None else None)
    return Client(await websockets.connect(f"{gw.ws_url}?token={token}", open_timeout=30), user)


async def test_a_malformed_claim_is_a_401_at_the_handshake(rooms_gw: RunningGateway):
    for claim in ({"lob\u0001by": ["read"]}, {"lobby": ["admin"]}, {f"r{n}": ["read"] for n in range(51)}):
        token = make_token("ann", "ann", 600, rooms=json.dumps(claim))
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{rooms_gw.ws_url}?token={token}", open_timeout=30)
        assert refused.value.response.status_code == 401


async def test_the_claim_reaches_every_route_and_the_room_features_work_end_to_end(rooms_gw: RunningGateway):
    room = f"case-{time.time_ns()}"
    writer = await open_with(rooms_gw, "wendy", {"case-*": ["read", "write", "moderate"]})
    reader = await open_with(rooms_gw, "rita", {"case-*": ["read"]})
    outsider = await open_with(rooms_gw, "otto", {"lobby": ["read", "write"]})
    try:
        await outsider.send("join_room", roomId=room)
        error = await outsider.expect("error")
        assert (error["code"], error["roomId"], error["action"]) == ("forbidden", room, "read")

        for client in (writer, reader):
            await client.send("join_room", roomId=room)
            assert (await client.expect("chat_history"))["unreadCount"] == 0
        await writer.send("chat_message", roomId=room, message="helo")
        message_id = (await reader.expect("message_received"))["messageId"]

        await reader.send("chat_message", roomId=room, message="may I?")
        assert (await reader.expect("error"))["action"] == "write"

        await writer.send("edit_message", roomId=room, messageId=message_id, message="hello")
        assert (await reader.expect("message_updated"))["message"] == "hello"
        await writer.send("react", roomId=room, messageId=message_id, emoji="🎉")
        assert (await reader.expect("reaction_update"))["counts"] == {"🎉": 1}

        await reader.send("get_rooms")
        [listed] = (await reader.expect("rooms_list"))["rooms"]
        assert (listed["roomId"], listed["unreadCount"], listed["lastMessage"]["message"]) == (room, 1, "hello")

        await writer.send("delete_message", roomId=room, messageId=message_id)
        assert (await reader.expect("message_deleted"))["deletedBy"] == "wendy"
        await reader.send("get_history", roomId=room)
        [tombstone] = (await reader.expect("chat_history"))["messages"]
        assert tombstone["deleted"] is True and "message" not in tombstone
        await outsider.quiet("message_deleted")
    finally:
        for client in (writer, reader, outsider):
            await client.ws.close()
