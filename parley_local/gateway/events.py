"""Build the Lambda events API Gateway WebSocket APIs send: CONNECT, MESSAGE, DISCONNECT, REQUEST authorizer.

Pure functions, no I/O, so the shapes can be tested alone. The shapes follow
AWS's real events (see powertools `tests/events/apiGatewayWebSocketApi*.json`)
and every one passes powertools' `APIGatewayWebSocket*EventModel`: a handler
cannot tell it runs locally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..local_aws.account import ACCOUNT_ID, REGION
from .ids import aws_id as aws_id  # re-exported: the ids events carry are drawn in `ids`

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _format_clf(second: int) -> str:
    t = time.gmtime(second)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


_clf_cache: tuple[int, str] = (-1, "")  # (epoch second, its text): the last one formatted


def clf_time(epoch_ms: int) -> str:
    """`requestTime` in Common Log Format, e.g. `11/Nov/2024:11:35:24 +0000` (locale-independent).

    The text changes once a second while every event carries it: the last second's text is kept
    (formatting it cost ~2 µs per event, profiled), and any other second is formatted afresh."""
    global _clf_cache
    second = epoch_ms // 1000
    cached_second, text = _clf_cache
    if second != cached_second:
        text = _format_clf(second)
        _clf_cache = (second, text)
    return text


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ConnectionInfo:
    """What API Gateway remembers about a connection and repeats in every event."""

    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    source_ip: str
    user_agent: str
    connected_at: int  # epoch ms
    headers: dict[str, str] = field(default_factory=dict)
    multi_value_headers: dict[str, list[str]] | None = None  # None: no name repeated, derived from `headers`
    query: dict[str, str] | None = None
    multi_value_query: dict[str, list[str]] | None = None  # None: no name repeated (or no query), derived from `query`
    authorizer: dict[str, Any] | None = None  # {principalId, ...context} once authorized


def _request_context(conn: ConnectionInfo, route_key: str, event_type: str, request_id: str, epoch_ms: int) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": clf_time(epoch_ms),
        "messageDirection": "IN",
        "stage": conn.stage,
        "connectedAt": conn.connected_at,
        "requestTimeEpoch": epoch_ms,
        "identity": {"sourceIp": conn.source_ip},
        "requestId": request_id,
        "domainName": conn.domain_name,
        "connectionId": conn.connection_id,
        "apiId": conn.api_id,
    }
    if conn.authorizer is not None:
        ctx["authorizer"] = dict(conn.authorizer)
    return ctx


def _handshake_request(conn: ConnectionInfo) -> dict[str, Any]:
    """The handshake's headers and query string (absent when there is none), as `$connect` and the
    authorizer carry them. The connection's own dicts, not copies: an event is only ever serialized
    (for the function's environment), and nothing changes them once the handshake is recorded. The
    multi-value views are built here when the connection keeps none (no name repeated)."""
    request: dict[str, Any] = {"headers": conn.headers, "multiValueHeaders": _multi(conn.headers, conn.multi_value_headers)}
    if conn.query is not None:
        request["queryStringParameters"] = conn.query
        request["multiValueQueryStringParameters"] = _multi(conn.query, conn.multi_value_query)
    return request


def _multi(single: dict[str, str], multi: dict[str, list[str]] | None) -> dict[str, list[str]]:
    return multi if multi is not None else {k: [v] for k, v in single.items()}


def connect_event(conn: ConnectionInfo, request_id: str) -> dict[str, Any]:
    """The `$connect` event: the handshake's headers and query string (absent when there is none)."""
    event = _handshake_request(conn)
    event["requestContext"] = _request_context(conn, "$connect", "CONNECT", request_id, now_ms())
    event["isBase64Encoded"] = False
    return event


def message_event(conn: ConnectionInfo, route_key: str, body: str, request_id: str, message_id: str) -> dict[str, Any]:
    """A MESSAGE event: the frame's text as `body`, no headers (AWS sends none after the handshake)."""
    ctx = _request_context(conn, route_key, "MESSAGE", request_id, now_ms())
    ctx["messageId"] = message_id
    return {"requestContext": ctx, "body": body, "isBase64Encoded": False}


def disconnect_event(conn: ConnectionInfo, request_id: str, status_code: int, reason: str) -> dict[str, Any]:
    """The `$disconnect` event, with the close code and reason the socket really ended with."""
    headers = {"Host": conn.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    ctx = _request_context(conn, "$disconnect", "DISCONNECT", request_id, now_ms())
    ctx["disconnectStatusCode"] = status_code
    ctx["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": ctx,
        "isBase64Encoded": False,
    }


def method_arn(conn: ConnectionInfo, route_key: str = "$connect") -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{conn.api_id}/{conn.stage}/{route_key}"


def authorizer_event(conn: ConnectionInfo, request_id: str) -> dict[str, Any]:
    """The REQUEST authorizer event for `$connect` (the connect event plus `type`, `methodArn`, `stageVariables`)."""
    return {"type": "REQUEST", "methodArn": method_arn(conn), **_handshake_request(conn),
            "requestContext": _request_context(conn, "$connect", "CONNECT", request_id, now_ms()), "stageVariables": {}}
