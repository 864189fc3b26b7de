"""WebSocket clients for the gateway's fixture template (tests/gateway/fixtures): its authorizer
takes `token=allow:<user>`, and its `echo` route answers with the event it got."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from .gateway_thread import RunningGateway


async def connect(gw: RunningGateway, query: str = "token=allow:alice", **kw: Any) -> Any:
    url = gw.ws_url + (f"?{query}" if query else "")
    return await websockets.connect(url, open_timeout=10, **kw)


async def request(ws: Any, payload: Any, timeout: float = 10.0) -> Any:
    """Send one frame (a str, or JSON of anything else) and return the next frame, parsed."""
    await ws.send(payload if isinstance(payload, str) else json.dumps(payload))
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def my_id(ws: Any) -> str:
    """This socket's connection id, as the gateway told the `echo` handler."""
    reply = await request(ws, {"action": "echo"})
    return str(reply["requestContext"]["connectionId"])


async def closed_with(ws: Any, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """The close code and reason the gateway sent; fails if it did not close the socket in time."""
    try:
        await asyncio.wait_for(ws.wait_closed(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("the gateway did not close the socket") from None
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, None)
