"""One client connection from handshake to `$disconnect`: upgrade, receive loop, route dispatch.

Why one object per connection: the steps share the connection's state (registered while
connecting, so `@connections` answers 410 until the upgrade; closed exactly once; `$disconnect`
run exactly once with the code the socket really ended with), and reading them in order here
is how AWS's lifecycle reads in AWS_WEBSOCKET_REFERENCE.md.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Callable

from aiohttp import WSMsgType, web

from .connection import CLOSED, OPEN, REASON_ABNORMAL, REASON_GOING_AWAY, REASON_NO_STATUS, Connection
from .console import Console
from .events import aws_id, disconnect_event, message_event
from .handshake import Handshake, connection_info
from .integration import BackgroundTasks, Integration, status_text
from .routing import RouteSelector
from .template import RouteSpec, WebSocketApiSpec
from .ws_limits import MESSAGE_LIMIT, MESSAGE_TOO_BIG, LimitedWebSocketResponse, message_bytes


def gateway_frame(message: str, conn_id: str, request_id: str) -> str:
    """The frame API Gateway itself sends (`Forbidden`, `Internal server error`), byte for byte (note the spacing)."""
    return f'{{"message": "{message}", "connectionId":"{conn_id}", "requestId":"{request_id}"}}'


@dataclass
class SessionServices:
    """What every session uses, owned by the gateway."""

    api: WebSocketApiSpec
    stage: str
    selector: RouteSelector
    connections: dict[str, Connection]
    handshake: Handshake
    integration: Integration
    tasks: BackgroundTasks
    console: Console
    close_timeout: float
    stopping: Callable[[], bool]


class Session:
    """Serves one WebSocket request: handshake -> upgrade -> receive loop -> `$disconnect`."""

    def __init__(self, services: SessionServices, request: web.Request, port: int):
        self.s = services
        self.request = request
        self.conn = Connection(connection_info(request, services.api.api_id, services.stage, port))

    async def serve(self) -> web.StreamResponse:
        conn = self.conn
        self.s.connections[conn.id] = conn  # "connecting": @connections answers 410 until the upgrade
        upgrading = False
        try:
            refusal, connect_headers = await self.s.handshake.run(conn)
            if refusal is not None:
                return refusal
            upgrading = True
        finally:
            if not upgrading:
                self.s.connections.pop(conn.id, None)
        return await self._upgrade(connect_headers)

    async def _upgrade(self, connect_headers: dict[str, str]) -> web.StreamResponse:
        conn = self.conn
        protocols: tuple[str, ...] = ()
        for k, v in connect_headers.items():
            if k.lower() == "sec-websocket-protocol":
                protocols = (v,)
        ws = LimitedWebSocketResponse(
            protocols=protocols, max_msg_size=MESSAGE_LIMIT + 1, compress=False,
            autoping=True, timeout=self.s.close_timeout,
        )
        for k, v in connect_headers.items():
            if k.lower() not in ("sec-websocket-protocol", "connection", "upgrade", "content-length"):
                ws.headers[k] = v
        try:
            await ws.prepare(self.request)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.s.connections.pop(conn.id, None)
            conn.state = CLOSED
            await self.run_disconnect(1006, REASON_ABNORMAL)
            raise
        conn.ws = ws
        conn.state = OPEN
        conn.touch()
        self._preinitialize_disconnect()
        if self.s.stopping():
            await conn.close(1001, REASON_GOING_AWAY)
        code, reason = await self._receive_loop(ws)
        conn.state = CLOSED
        self.s.connections.pop(conn.id, None)
        await self.run_disconnect(code, reason)
        return ws

    def _preinitialize_disconnect(self) -> None:
        """An open socket will need `$disconnect`: its first environment starts in the background once
        the machine has a CPU to spare (Lambda's proactive initialization), so that neither the first
        disconnect nor a Ctrl-C with every socket open waits for its cold start. Costs one environment
        once a client is connected."""
        route = self.s.api.routes.get("$disconnect")
        if route is not None and route.function is not None:
            self.s.integration.runtime.preinitialize(route.function)

    async def _receive_loop(self, ws: web.WebSocketResponse) -> tuple[int, str]:
        """Read frames until the socket ends; returns the close code and reason `$disconnect` reports."""
        conn = self.conn
        client_code: int | None = None
        client_reason = ""
        while True:
            try:
                msg = await ws.receive()
            except (ConnectionError, asyncio.CancelledError):
                break
            kind = msg.type
            if kind is WSMsgType.TEXT:
                conn.touch()
                self._on_text(msg.data)
            elif kind is WSMsgType.BINARY:
                await conn.close(1003, "Binary frames are not supported")
            elif kind is WSMsgType.CLOSE:
                client_code, client_reason = int(msg.data or 0), str(msg.extra or "")
                break
            elif kind is WSMsgType.ERROR:
                code = int(getattr(msg.data, "code", 0) or ws.close_code or 1006)
                if conn.close_code is None:
                    conn.close_code = code
                    conn.close_reason = MESSAGE_TOO_BIG if code == 1009 else str(msg.data)
                if not ws.closed:
                    await ws.close(code=code)
                break
            elif kind in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
        if conn.close_code is not None:
            return conn.close_code, conn.close_reason
        if client_code is not None:
            if client_code == 0:
                return 1005, REASON_NO_STATUS
            return client_code, client_reason
        return 1006, REASON_ABNORMAL

    def _on_text(self, body: str) -> None:
        """Route one text frame; its invocation runs as a task, so frames are handled in parallel, as on AWS."""
        conn = self.conn
        request_id = aws_id()
        key = self.s.selector.select(body)
        if key is None:
            self.s.console.invocation("(no route)", conn.id, 0.0, "Forbidden")
            self.s.tasks.spawn(conn.send(gateway_frame("Forbidden", conn.id, request_id)), conn.tasks)
            return
        route = self.s.api.routes[key]
        if route.function is None:
            return
        self.s.tasks.spawn(self._run_message(route, body, request_id), conn.tasks, eager=True)

    async def _run_message(self, route: RouteSpec, body: str, request_id: str) -> None:
        conn = self.conn
        assert route.function is not None
        event = message_event(conn.info, route.key, body, request_id, aws_id())
        inv = await self.s.integration.invoke(route.function, event, route)
        try:  # the reply first, then the log line: the client does not wait for the console
            if not inv.ok:
                await conn.send(gateway_frame("Internal server error", conn.id, request_id))
            elif route.route_response and isinstance(inv.result, dict):
                reply = inv.result.get("body")
                if reply is not None and not isinstance(reply, str):
                    reply = json.dumps(reply)
                if reply:
                    await self._send_route_response(route.key, reply)
        finally:
            self.s.console.invocation(route.key, conn.id, inv.duration_ms, status_text(inv), inv.init_ms)

    async def _send_route_response(self, route_key: str, reply: str) -> None:
        """Deliver a route response, or refuse one over 128 KB: not sent, one loud line, close 1009.

        AWS does not document what it does with an oversized route response. The strictest
        plausible behaviour is chosen so that code that passes locally cannot fail on AWS: the
        reply is never delivered and the socket is closed with 1009, as API Gateway closes it
        for an oversized message in the other direction (docs/ARCHITECTURE.md).
        """
        conn = self.conn
        size = message_bytes(reply)
        if size <= MESSAGE_LIMIT:
            await conn.send(reply)
            return
        self.s.console.line(
            f"LIMIT EXCEEDED: route {route_key!r} returned a {size}-byte body for {conn.id}; API Gateway's "
            f"message limit is {MESSAGE_LIMIT} bytes (128 KB). Not delivered; socket closed with 1009. "
            "Split it into messages of at most 128 KB."
        )
        await conn.close(1009, MESSAGE_TOO_BIG)

    async def run_disconnect(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn.disconnect_started:
            return
        conn.disconnect_started = True
        route = self.s.api.routes.get("$disconnect")
        if route is None or route.function is None:
            return
        inv = await self.s.integration.invoke(route.function, disconnect_event(conn.info, aws_id(), code, reason), route)
        self.s.console.invocation("$disconnect", conn.id, inv.duration_ms, f"{status_text(inv)} (close {code})", inv.init_ms)
