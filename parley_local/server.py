"""The local API Gateway WebSocket API: handshake, routing, limits, timeouts, `$disconnect`, `@connections`.

Why one aiohttp app: API Gateway serves the WebSocket endpoint and the
`@connections` API on the same host; handlers find the latter through
`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=http://HOST:PORT/STAGE`, and extra
HTTP routes (the dev client, dev tokens) hang off the same port through
`extra_routes`. Everything here is generic to any SAM WebSocket template;
behaviour follows AWS_WEBSOCKET_REFERENCE.md wherever a client or a handler
could tell the difference.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import WSMsgType, web

from . import authorizer as authz
from .connection import (
    CLOSED, OPEN, REASON_ABNORMAL, REASON_GOING_AWAY, REASON_NO_STATUS, Connection,
)
from .connections_api import ConnectionsApi
from .console import Console
from .dynamodb_local import LocalAws
from .events import (
    ConnectionInfo, authorizer_event, aws_id, connect_event, disconnect_event, message_event, method_arn, now_ms,
)
from .lambda_runtime import Invocation, LambdaRuntime
from .routing import RouteSelector
from .template import RouteSpec, Stack
from .ws_limits import MESSAGE_LIMIT, LimitedWebSocketResponse

_STATUS_TEXT = {401: "Unauthorized", 403: "Forbidden", 500: "Internal server error", 502: "Internal server error"}
_ERROR_TYPE = {401: "UnauthorizedException", 403: "AccessDeniedException", 500: "AuthorizerConfigurationException"}


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    stage: str = "local"
    idle_timeout: float = 600.0
    max_connection_duration: float = 7200.0
    integration_timeout: float | None = None  # None: the route's (29 s at most)
    post_latency_ms: float = 0.0
    post_queue_limit: int = 1000
    max_concurrency: int = 32
    prewarm: bool = True
    dynamodb_endpoint: str | None = None
    close_timeout: float = 5.0
    moto_mode: str = "subprocess"  # the embedded moto server: its own process, or "thread" (in-process)


def _frame(message: str, conn_id: str, request_id: str) -> str:
    # Byte-for-byte the shape API Gateway sends (note the spacing).
    return f'{{"message": "{message}", "connectionId":"{conn_id}", "requestId":"{request_id}"}}'


class Gateway:
    """A running local WebSocket API for one SAM stack."""

    def __init__(
        self,
        stack: Stack,
        config: GatewayConfig | None = None,
        console: Console | None = None,
        extra_routes: Callable[[web.Application], None] | None = None,
        before_serving: list[Callable[["Gateway"], Awaitable[None] | None]] | None = None,
    ):
        self.stack = stack
        self.api = stack.api
        self.config = config or GatewayConfig()
        self.console = console or Console()
        self.extra_routes = extra_routes
        self.before_serving = before_serving or []
        self.selector = RouteSelector(self.api.selection_expression, self.api.routes.keys())
        self.connections: dict[str, Connection] = {}
        self.aws: LocalAws | None = None
        self.runtime: LambdaRuntime | None = None
        self.port = self.config.port
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._threads: list[asyncio.Future[Any]] = []  # start-up work run in threads
        self._stopping = False

    # -- addresses ----------------------------------------------------------------

    @property
    def local_host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    @property
    def http_url(self) -> str:
        return f"http://{self.local_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.local_host}:{self.port}/{self.config.stage}"

    @property
    def connections_url(self) -> str:
        return f"{self.http_url}/{self.config.stage}"

    # -- lifecycle ----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`asyncio.to_thread`, tracked: if start() is cancelled (Ctrl-C during start-up), the thread
        cannot be, so stop() waits for it before stopping what it uses or started."""
        fut = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._threads.append(fut)
        return await asyncio.shield(fut)

    async def start(self) -> None:
        """Start local AWS, create tables, bind the port, warm the functions, then accept connections.

        Cancellable at any point (Ctrl-C during start-up); stop() then releases whatever was started.
        """
        self.aws = await self._in_thread(LocalAws.start, self.config.dynamodb_endpoint, self.config.moto_mode)
        await self._in_thread(self.aws.create_tables, self.stack.tables)
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.config.host, self.config.port))
        self.port = self._sock.getsockname()[1]
        endpoints = {**self.aws.env(), "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": self.connections_url}
        self.runtime = LambdaRuntime(self.stack.functions, endpoints, self.console, self.config.max_concurrency)
        for hook in self.before_serving:
            res = hook(self)
            if asyncio.iscoroutine(res):
                await res
        if self.config.prewarm:
            await self.runtime.prewarm(sorted(self._used_functions()))
        app = self._build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self._sweeper = asyncio.create_task(self._sweep())

    def _used_functions(self) -> set[str]:
        used: set[str] = set()
        for route in self.api.routes.values():
            if route.function:
                used.add(route.function)
            if route.authorizer:
                used.add(route.authorizer.function)
        return used

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        if self.extra_routes is not None:
            self.extra_routes(app)
        ConnectionsApi(
            self.config.stage, self.connections.get, self._delete_connection,
            self.config.post_latency_ms, self.config.post_queue_limit,
        ).add_routes(app)
        app.router.add_get("/{stage}", self._ws_handler)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def stop(self) -> None:
        """Close every socket with 1001 "Going away", run their `$disconnect`, stop functions and services."""
        if self._stopping:
            return
        self._stopping = True
        if self._sweeper:
            self._sweeper.cancel()
        await asyncio.gather(
            *(c.close(1001, REASON_GOING_AWAY) for c in list(self.connections.values()) if c.state == OPEN),
            return_exceptions=True,
        )
        await self._wait_for_disconnects()
        if self._background:
            await asyncio.wait(list(self._background), timeout=2)
        if self._runner:
            await self._runner.cleanup()
        elif self._sock is not None:  # start() was interrupted before serving
            self._sock.close()
        if self.runtime:
            await self.runtime.close()
        if self._threads:  # start-up work that may still run in a thread (LocalAws.start, create_tables)
            done, _ = await asyncio.wait(self._threads, timeout=60)
            for fut in done:
                if not fut.cancelled() and fut.exception() is None and isinstance(fut.result(), LocalAws) and self.aws is None:
                    self.aws = fut.result()
        if self.aws:
            await asyncio.to_thread(self.aws.stop)

    async def _wait_for_disconnects(self, report_every: float = 3.0, stall_limit: float = 35.0) -> None:
        """Wait for every socket's handler to finish (its close, then its `$disconnect`), however many
        there are, while they make progress; report every few seconds; give up only after `stall_limit`
        seconds without one finishing (more than the 29 s integration timeout)."""
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        while self._handlers:
            before = len(self._handlers)
            await asyncio.wait(list(self._handlers), timeout=report_every)
            if not self._handlers:
                return
            now = loop.time()
            if len(self._handlers) < before:
                last_progress = now
            elif now - last_progress >= stall_limit:
                self.console.line(f"Giving up on {len(self._handlers)} connection(s): no `$disconnect` finished for {stall_limit:.0f} s.")
                return
            self.console.line(f"  {len(self._handlers)} connection(s) still closing or running $disconnect ... (Ctrl-C again to force)")

    # -- invocations --------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any], owner: set[asyncio.Task[Any]] | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        for s in (self._background, owner):
            if s is not None:
                s.add(task)
                task.add_done_callback(s.discard)
        return task

    async def _invoke(self, function: str, event: dict[str, Any], route: RouteSpec | None) -> Invocation:
        """Invoke through the integration: the caller waits at most the integration timeout (29 s)."""
        assert self.runtime is not None
        limit = self.config.integration_timeout
        if limit is None:
            limit = (route.integration_timeout_ms if route else 29_000) / 1000
        task = self._spawn(self.runtime.invoke(function, event))
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except asyncio.TimeoutError:
            # The function keeps running to its own timeout, as on AWS.
            return Invocation(
                str(uuid.uuid4()), error={"errorMessage": "Endpoint request timed out", "errorType": "IntegrationTimeout"},
                duration_ms=(time.perf_counter() - started) * 1000, timed_out=True,
            )

    @staticmethod
    def _status(inv: Invocation) -> str:
        if inv.timed_out:
            return "timeout"
        if inv.error is not None:
            return f"error {inv.error.get('errorType', '')}".rstrip()
        if isinstance(inv.result, dict) and "statusCode" in inv.result:
            return str(inv.result["statusCode"])
        return "ok"

    # -- the WebSocket endpoint ---------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["stage"] != self.config.stage:
            return web.json_response({"message": "Forbidden"}, status=403, headers={"x-amzn-ErrorType": "ForbiddenException"})
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426)
        if self._stopping:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await self._serve(request)
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _connection_info(self, request: web.Request) -> ConnectionInfo:
        source_ip = request.remote or "127.0.0.1"
        peer = request.transport.get_extra_info("sockname") if request.transport else None
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            headers[k] = v
            multi.setdefault(k, []).append(v)
        extra = {
            "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
            "X-Forwarded-For": source_ip,
            "X-Forwarded-Port": str(peer[1] if peer else self.port),
            "X-Forwarded-Proto": request.scheme,
        }
        for k, v in extra.items():
            headers[k] = v
            multi[k] = [v]
        query = multi_query = None
        if request.query_string:
            query, multi_query = {}, {}
            for k, v in request.query.items():
                query[k] = v
                multi_query.setdefault(k, []).append(v)
        return ConnectionInfo(
            connection_id=aws_id(),
            api_id=self.api.api_id,
            stage=self.config.stage,
            domain_name=request.host,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            connected_at=now_ms(),
            headers=headers,
            multi_value_headers=multi,
            query=query,
            multi_value_query=multi_query,
        )

    def _refuse(self, status: int, body: str | None = None) -> web.Response:
        text = body if body else json.dumps({"message": _STATUS_TEXT.get(status, "Forbidden" if status < 500 else "Internal server error")})
        headers = {"x-amzn-RequestId": aws_id()}
        if status in _ERROR_TYPE:
            headers["x-amzn-ErrorType"] = _ERROR_TYPE[status]
        return web.Response(status=status, text=text, content_type="application/json", headers=headers)

    async def _authorize(self, conn: Connection, route: RouteSpec) -> int:
        """Run the `$connect` authorizer; returns the HTTP status (200 = allowed)."""
        auth = route.authorizer
        assert auth is not None
        info = conn.info
        if authz.missing_identity(auth.identity_sources, info.headers, info.query):
            self.console.invocation("$connect:auth", conn.id, 0.0, "401 (no identity source, not invoked)")
            return 401
        inv = await self._invoke(auth.function, authorizer_event(info, aws_id()), route)
        error = None if inv.ok else str((inv.error or {}).get("errorMessage", ""))
        decision = authz.decide(inv.result, error, method_arn(info))
        self.console.invocation("$connect:auth", conn.id, inv.duration_ms, f"{decision.status} {decision.reason}".rstrip())
        if decision.status == 200:
            info.authorizer = decision.authorizer
        return decision.status

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        conn = Connection(self._connection_info(request))
        self.connections[conn.id] = conn  # "connecting": @connections answers 410 until the upgrade
        upgrading = False
        try:
            refusal, connect_headers = await self._handshake(conn)
            if refusal is not None:
                return refusal
            upgrading = True
        finally:
            if not upgrading:
                self.connections.pop(conn.id, None)
        return await self._upgrade(request, conn, connect_headers)

    async def _handshake(self, conn: Connection) -> tuple[web.Response | None, dict[str, str]]:
        """Authorizer then `$connect`, both before the upgrade: a refusal response, or the headers `$connect` returned."""
        route = self.api.routes.get("$connect")
        if route is not None and route.authorizer is not None:
            status = await self._authorize(conn, route)
            if status != 200:
                return self._refuse(status), {}
        if route is None or route.function is None:
            return None, {}
        inv = await self._invoke(route.function, connect_event(conn.info, aws_id()), route)
        self.console.invocation("$connect", conn.id, inv.duration_ms, self._status(inv))
        if not inv.ok:
            return self._refuse(502), {}
        result = inv.result if isinstance(inv.result, dict) else {}
        try:
            status = int(result.get("statusCode", 200) or 200)
        except (TypeError, ValueError):
            return self._refuse(502), {}
        if not 200 <= status < 300:
            body = result.get("body")
            return self._refuse(status, body if isinstance(body, str) else None), {}
        return None, {str(k): str(v) for k, v in (result.get("headers") or {}).items()}

    async def _upgrade(self, request: web.Request, conn: Connection, connect_headers: dict[str, str]) -> web.StreamResponse:
        protocols: tuple[str, ...] = ()
        for k, v in connect_headers.items():
            if k.lower() == "sec-websocket-protocol":
                protocols = (v,)
        ws = LimitedWebSocketResponse(
            protocols=protocols, max_msg_size=MESSAGE_LIMIT + 1, compress=False,
            autoping=True, timeout=self.config.close_timeout,
        )
        for k, v in connect_headers.items():
            if k.lower() not in ("sec-websocket-protocol", "connection", "upgrade", "content-length"):
                ws.headers[k] = v
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.connections.pop(conn.id, None)
            conn.state = CLOSED
            await self._run_disconnect(conn, 1006, REASON_ABNORMAL)
            raise
        conn.ws = ws
        conn.state = OPEN
        conn.touch()
        if self._stopping:
            await conn.close(1001, REASON_GOING_AWAY)
        code, reason = await self._receive_loop(conn, ws)
        conn.state = CLOSED
        self.connections.pop(conn.id, None)
        await self._run_disconnect(conn, code, reason)
        return ws

    async def _receive_loop(self, conn: Connection, ws: web.WebSocketResponse) -> tuple[int, str]:
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
                self._on_text(conn, msg.data)
            elif kind is WSMsgType.BINARY:
                await conn.close(1003, "Binary frames are not supported")
            elif kind is WSMsgType.CLOSE:
                client_code, client_reason = int(msg.data or 0), str(msg.extra or "")
                break
            elif kind is WSMsgType.ERROR:
                code = int(getattr(msg.data, "code", 0) or ws.close_code or 1006)
                if conn.close_code is None:
                    conn.close_code = code
                    conn.close_reason = "Message too big" if code == 1009 else str(msg.data)
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

    def _on_text(self, conn: Connection, body: str) -> None:
        request_id = aws_id()
        key = self.selector.select(body)
        if key is None:
            self.console.invocation("(no route)", conn.id, 0.0, "Forbidden")
            self._spawn(conn.send(_frame("Forbidden", conn.id, request_id)), conn.tasks)
            return
        route = self.api.routes[key]
        if route.function is None:
            return
        self._spawn(self._run_message(conn, route, body, request_id), conn.tasks)

    async def _run_message(self, conn: Connection, route: RouteSpec, body: str, request_id: str) -> None:
        assert route.function is not None
        event = message_event(conn.info, route.key, body, request_id, aws_id())
        inv = await self._invoke(route.function, event, route)
        self.console.invocation(route.key, conn.id, inv.duration_ms, self._status(inv))
        if not inv.ok:
            await conn.send(_frame("Internal server error", conn.id, request_id))
            return
        if route.route_response and isinstance(inv.result, dict):
            reply = inv.result.get("body")
            if reply is not None and not isinstance(reply, str):
                reply = json.dumps(reply)
            if reply:
                await conn.send(reply)

    async def _run_disconnect(self, conn: Connection, code: int, reason: str) -> None:
        if conn.disconnect_started:
            return
        conn.disconnect_started = True
        route = self.api.routes.get("$disconnect")
        if route is None or route.function is None:
            return
        inv = await self._invoke(route.function, disconnect_event(conn.info, aws_id(), code, reason), route)
        self.console.invocation("$disconnect", conn.id, inv.duration_ms, f"{self._status(inv)} (close {code})")

    # -- server-side closes -------------------------------------------------------

    def _delete_connection(self, conn: Connection) -> None:
        """DeleteConnection: close (1000) now; `$disconnect` follows with "Connection Closed Normally"."""
        conn.close_code, conn.close_reason = 1000, "Connection Closed Normally"
        self._spawn(conn.close(1000, conn.close_reason, frame_reason=""))

    async def _sweep(self) -> None:
        """Close idle connections and those past the maximum duration (1001 "Going away")."""
        idle, longest = self.config.idle_timeout, self.config.max_connection_duration
        tick = min(5.0, max(0.05, min(idle, longest) / 10))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.state != OPEN or conn.close_code is not None:
                    continue
                if now - conn.last_active_mono >= idle or now - conn.opened_mono >= longest:
                    self._spawn(conn.close(1001, REASON_GOING_AWAY))

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "Forbidden"}, status=403, headers={"x-amzn-ErrorType": "ForbiddenException"})

    # -- presentation -------------------------------------------------------------

    def routes_table(self) -> list[str]:
        width = max([len(k) for k in self.api.routes] + [9])
        lines = []
        order = sorted(self.api.routes, key=lambda k: (not k.startswith("$"), k))
        for key in order:
            route = self.api.routes[key]
            target = route.function or "(no Lambda integration)"
            extras = []
            if route.authorizer:
                extras.append(f"authorizer {route.authorizer.function}")
            if route.route_response:
                extras.append("route response")
            suffix = f"  [{', '.join(extras)}]" if extras else ""
            lines.append(f"  {key:<{width}}  ->  {target}{suffix}")
        return lines

    def _moto_note(self) -> str:
        assert self.aws is not None
        return f" (moto, subprocess pid {self.aws.pid})" if self.aws.pid else " (moto, in-process)"

    def banner(self) -> list[str]:
        assert self.aws is not None
        lines = [
            f"Local API Gateway for {self.stack.template_path.name} (API {self.api.name}, id {self.api.api_id})",
            f"  WebSocket:     {self.ws_url}",
            f"  @connections:  {self.connections_url}/@connections/{{connectionId}}",
            f"  DynamoDB:      {self.aws.dynamodb_endpoint}" + ("" if self.config.dynamodb_endpoint else self._moto_note()),
            f"  Tables:        {', '.join(t.name for t in self.stack.tables) or '(none)'}",
            f"  Route selection: {self.api.selection_expression}",
            "Routes:",
            *self.routes_table(),
        ]
        return lines
