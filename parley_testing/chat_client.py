"""A Parley protocol client over a real WebSocket, for tests that drive the real handlers through a gateway."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import websockets

from parley_local.tokens import make_token

from .gateway_thread import RunningGateway


class Client:
    """A WebSocket client that keeps frames it was not waiting for, so expectations do not depend on order."""

    def __init__(self, ws: Any, user: str):
        self.ws = ws
        self.user = user
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, gw: RunningGateway, user: str, name: str) -> "Client":
        ws = await websockets.connect(f"{gw.ws_url}?token={make_token(user, name, 600)}", open_timeout=30)
        return cls(ws, user)

    async def send(self, type_: str, **data: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, "data": data}))

    async def expect(self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda d: True, timeout: float = 15) -> dict[str, Any]:
        for i, frame in enumerate(self.backlog):
            if frame["type"] == type_ and pred(frame.get("data", {})):
                return self.backlog.pop(i)["data"]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.user}: no {type_} frame; got {[f['type'] for f in self.backlog]}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if frame["type"] == type_ and pred(frame.get("data", {})):
                return frame["data"]
            self.backlog.append(frame)

    async def quiet(self, type_: str, seconds: float = 0.5) -> None:
        """Assert no `type_` frame arrives within `seconds`."""
        try:
            await self.expect(type_, timeout=seconds)
        except (AssertionError, asyncio.TimeoutError):
            return
        raise AssertionError(f"{self.user} got an unexpected {type_}")


async def joined_clients(gw: RunningGateway, room: str, count: int, prefix: str) -> list[Client]:
    """`count` users (`<prefix>00`, `<prefix>01`, ...) connected and joined to `room` one after another."""
    clients = [await Client.open(gw, f"{prefix}{i:02d}", f"User {i}") for i in range(count)]
    for client in clients:
        await client.send("join_room", roomId=room)
        await client.expect("chat_history")
    return clients
