"""The WebSocket handshake before the upgrade: the request as API Gateway records it, the authorizer
call, `$connect`, and the HTTP refusals a client sees.

Why before the upgrade: on AWS a refused `$connect` (or authorizer) is an HTTP status on the
handshake, never a socket that opens and closes; clients branch on 401/403 vs 5xx.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

from aiohttp import web

from . import authorizer as authz
from .connection import Connection
from .console import Console
from .events import ConnectionInfo, authorizer_event, aws_id, connect_event, method_arn, now_ms
from .ids import random_hex
from .integration import Integration, status_text
from .template import RouteSpec, WebSocketApiSpec

_STATUS_TEXT = {401: "Unauthorized", 403: "Forbidden", 500: "Internal server error", 502: "Internal server error"}
_ERROR_TYPE = {401: "UnauthorizedException", 403: "AccessDeniedException", 500: "AuthorizerConfigurationException"}


def connection_info(request: web.Request, api_id: str, stage: str, port: int) -> ConnectionInfo:
    """What API Gateway records about the handshake: headers (with its own X-Forwarded-*), query, identity."""
    source_ip = request.remote or "127.0.0.1"
    peer = request.transport.get_extra_info("sockname") if request.transport else None
    # aiohttp's header names are `istr`s; the names go out as plain `str`, which the worker's request
    # encoder (orjson, `environment.request_line`) takes on its fast path.
    headers, multi = _single_and_multi((str(k), v) for k, v in request.headers.items())
    extra = (
        ("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{random_hex(24)}"),
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Port", str(peer[1] if peer else port)),
        ("X-Forwarded-Proto", request.scheme),
    )
    for k, v in extra:
        headers[k] = v
        if multi is not None:
            multi[k] = [v]
    query = multi_query = None
    if request.query_string:
        query, multi_query = _single_and_multi(request.query.items())
    return ConnectionInfo(
        connection_id=aws_id(),
        api_id=api_id,
        stage=stage,
        domain_name=request.host,
        source_ip=source_ip,
        user_agent=request.headers.get("User-Agent", ""),
        connected_at=now_ms(),
        headers=headers,
        multi_value_headers=multi,
        query=query,
        multi_value_query=multi_query,
    )


def _single_and_multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]] | None]:
    """API Gateway's two views of repeatable fields: the last value of each name, and all of them in order.

    The second is None when no name is repeated (nearly always): the events derive it from the first
    when they are built, so an open connection does not keep a list per header for its whole life
    (objects the garbage collector would walk again and again during a storm of connections)."""
    items = list(pairs)
    single = dict(items)
    if len(single) == len(items):
        return single, None
    multi: dict[str, list[str]] = {}
    for k, v in items:
        multi.setdefault(k, []).append(v)
    return single, multi


def refuse(status: int, body: str | None = None) -> web.Response:
    """The handshake's HTTP error response, with API Gateway's body and `x-amzn-ErrorType`."""
    text = body if body else json.dumps({"message": _STATUS_TEXT.get(status, "Forbidden" if status < 500 else "Internal server error")})
    headers = {"x-amzn-RequestId": aws_id()}
    if status in _ERROR_TYPE:
        headers["x-amzn-ErrorType"] = _ERROR_TYPE[status]
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


class Handshake:
    """Authorizer then `$connect` for one connection."""

    def __init__(self, api: WebSocketApiSpec, integration: Integration, console: Console):
        self.api = api
        self.integration = integration
        self.console = console

    async def authorize(self, conn: Connection, route: RouteSpec) -> int:
        """Call the `$connect` REQUEST authorizer; returns the HTTP status (200 = allowed)."""
        auth = route.authorizer
        assert auth is not None
        info = conn.info
        if authz.missing_identity(auth.identity_sources, info.headers, info.query):
            self.console.invocation("$connect:auth", conn.id, 0.0, "401 (no identity source, not invoked)")
            return 401
        inv = await self.integration.invoke(auth.function, authorizer_event(info, aws_id()), route)
        error = None if inv.ok else str((inv.error or {}).get("errorMessage", ""))
        decision = authz.decide(inv.result, error, method_arn(info))
        self.console.invocation("$connect:auth", conn.id, inv.duration_ms, f"{decision.status} {decision.reason}".rstrip(), inv.init_ms)
        if decision.status == 200:
            info.authorizer = decision.authorizer
        return decision.status

    async def run(self, conn: Connection) -> tuple[web.Response | None, dict[str, str]]:
        """A refusal response, or None and the headers `$connect` returned (for the upgrade response)."""
        route = self.api.routes.get("$connect")
        if route is not None and route.authorizer is not None:
            status = await self.authorize(conn, route)
            if status != 200:
                return refuse(status), {}
        if route is None or route.function is None:
            return None, {}
        inv = await self.integration.invoke(route.function, connect_event(conn.info, aws_id()), route)
        self.console.invocation("$connect", conn.id, inv.duration_ms, status_text(inv), inv.init_ms)
        if not inv.ok:
            return refuse(502), {}
        result = inv.result if isinstance(inv.result, dict) else {}
        try:
            status = int(result.get("statusCode", 200) or 200)
        except (TypeError, ValueError):
            return refuse(502), {}
        if not 200 <= status < 300:
            body = result.get("body")
            return refuse(status, body if isinstance(body, str) else None), {}
        return None, {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
