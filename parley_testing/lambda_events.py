"""API Gateway WebSocket events for calling handlers directly, built by the local gateway's own
event code (`parley_local.gateway.events`), so a handler test sees exactly what `parley dev` sends."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt

from parley_local.gateway import events

API_ID = "abcdef1234"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
STAGE = "test"


def connection_id(n: int) -> str:
    """The n-th test connection id, shaped like API Gateway's (16 characters ending in `=`)."""
    return base64.b64encode(f"conn-{n:05d}".encode()[:11]).decode()[:15] + "="


def _info(connection: str, user: str | None, name: str | None, headers: dict[str, str] | None = None,
          query: dict[str, str] | None = None, rooms: str | None = None) -> events.ConnectionInfo:
    headers = headers or {}
    info = events.ConnectionInfo(
        connection_id=connection, api_id=API_ID, stage=STAGE, domain_name=DOMAIN, source_ip="127.0.0.1",
        user_agent="", connected_at=int(time.time() * 1000) - 1000,
        headers=dict(headers), multi_value_headers={k: [v] for k, v in headers.items()},
        query=query, multi_value_query={k: [v] for k, v in query.items()} if query is not None else None,
    )
    if user is not None:
        info.authorizer = {"principalId": user, "name": name or user, "integrationLatency": 12}
        if rooms is not None:
            info.authorizer["rooms"] = rooms  # as the authorizer encodes a `rooms` claim
    return info


def message_event(connection: str, user: str, body: str | dict | list, *, route_key: str | None = None,
                  name: str | None = None, rooms: str | None = None) -> dict[str, Any]:
    """A MESSAGE event; the route key defaults to the body's `type` (what the template's selection picks)."""
    text = body if isinstance(body, str) else json.dumps(body)
    if route_key is None:
        route_key = body.get("type", "$default") if isinstance(body, dict) else "$default"
    return events.message_event(_info(connection, user, name, rooms=rooms), route_key, text, events.aws_id(), events.aws_id())


def connect_event(connection: str, user: str, name: str | None = None) -> dict[str, Any]:
    """A `$connect` event after the authorizer allowed `user` (token redacted, as handlers must never log it)."""
    headers = {"Host": DOMAIN, "Sec-WebSocket-Version": "13"}
    info = _info(connection, user, name, headers, {"token": "eyJhbGciOiJIUzI1NiJ9.e30.redacted"})
    return events.connect_event(info, events.aws_id())


def disconnect_event(connection: str, user: str, code: int = 1001, reason: str = "Going away") -> dict[str, Any]:
    return events.disconnect_event(_info(connection, user, None), events.aws_id(), code, reason)


# ---- the authorizer's input ------------------------------------------------------------------

JWT_SECRET = "s3cret-for-tests-only-0123456789abcdef"  # what the handler tests store under JWT_SECRET_PARAMETER
AUTHORIZER_METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/test/$connect"


def jwt_token(claims: dict[str, Any] | None = None, key: str = JWT_SECRET, algorithm: str = "HS256",
              headers: dict[str, Any] | None = None) -> str:
    """A token for the authorizer: `alice`, named Alice, valid 5 minutes; `claims` adds or
    overrides claims, and a claim set to None is left out."""
    body = {"sub": "alice", "name": "Alice", "exp": int(time.time()) + 300}
    body.update(claims or {})
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm, headers=headers)
