"""The `@connections` management API (botocore `apigatewaymanagementapi`), served on the gateway's own port.

Why it matters: handlers send with `PostToConnection` through boto3, and
must see AWS's exact answers to handle them correctly: 410 with
`x-amzn-ErrorType: GoneException` (so boto3 raises
`client.exceptions.GoneException`) for unknown, closed or still-connecting
ids; 413 over 131,072 bytes; 429 when the simulated `--post-latency-ms` queue
overflows; 403 for unsigned requests or a wrong stage. Signatures are
accepted without verification.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from aiohttp import web

from .connection import Connection
from .events import aws_id
from .ws_limits import MESSAGE_LIMIT, message_bytes

MAX_DATA_BYTES = MESSAGE_LIMIT  # PostToConnection's Data: API Gateway's 128 KB message limit
TOO_LARGE_MESSAGE = f"Request entity too large: Data is over {MAX_DATA_BYTES} bytes"


def error_response(status: int, error_type: str, message: str) -> web.Response:
    """An AWS REST-JSON error botocore maps to `client.exceptions.<error_type>`."""
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": aws_id()},
    )


class ConnectionsApi:
    """Handlers for `POST|GET|DELETE [/{stage}]/@connections/{connectionId}`."""

    def __init__(
        self,
        stage: str,
        lookup: Callable[[str], Connection | None],
        delete: Callable[[Connection], None],
        post_latency_ms: float = 0.0,
        queue_limit: int = 1000,
    ):
        self.stage = stage
        self.lookup = lookup
        self.delete = delete
        self.latency_s = max(0.0, post_latency_ms) / 1000
        self.queue_limit = queue_limit
        self.in_flight = 0

    def add_routes(self, app: web.Application) -> None:
        for path in ("/{stage}/@connections/{connection_id}", "/@connections/{connection_id}"):
            # `handle` is looked up per request, so a test can tell HTTP calls from the workers' piped ones.
            app.router.add_route("*", path, lambda request: self.handle(request))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        stage = request.match_info.get("stage")
        if stage is not None and stage != self.stage:
            return error_response(403, "ForbiddenException", "Forbidden")
        if "Authorization" not in request.headers and "X-Amz-Signature" not in request.query:
            return error_response(403, "ForbiddenException", "Missing Authentication Token")
        if request.method not in ("POST", "GET", "DELETE"):
            return error_response(403, "ForbiddenException", "Missing Authentication Token")
        data = b""
        if request.method == "POST":
            if (request.content_length or 0) > MAX_DATA_BYTES:
                return error_response(413, "PayloadTooLargeException", TOO_LARGE_MESSAGE)
            data = await request.read()
            status, error_type, message = await self.post(request.match_info["connection_id"], data)
            if status != 200:
                return error_response(status, error_type, message)
            return web.Response(status=200, headers={"x-amzn-RequestId": aws_id()})
        if not await self._delay():
            return error_response(429, "LimitExceededException", "Rate exceeded")
        conn = self.lookup(request.match_info["connection_id"])
        if conn is None or not conn.is_open:
            return error_response(410, "GoneException", "Gone")
        headers = {"x-amzn-RequestId": aws_id()}
        if request.method == "GET":
            return web.json_response(conn.description(), headers=headers)
        self.delete(conn)
        return web.Response(status=204, headers=headers)

    async def post(self, connection_id: str, data: bytes) -> tuple[int, str, str]:
        """PostToConnection: (HTTP status, error type, message), for the HTTP route and for workers' pipes alike.

        The size check comes first, so an oversized post is refused (413, nothing sent, the socket
        left open) on both paths before any latency or connection lookup.
        """
        if message_bytes(data) > MAX_DATA_BYTES:
            return 413, "PayloadTooLargeException", TOO_LARGE_MESSAGE
        if not await self._delay():
            return 429, "LimitExceededException", "Rate exceeded"
        conn = self.lookup(connection_id)
        if conn is None or not conn.is_open or not await conn.send(data):
            return 410, "GoneException", "Gone"
        return 200, "", ""

    async def _delay(self) -> bool:
        """`--post-latency-ms`: wait it out, or False (429) when the queue of waiting calls is full."""
        if self.latency_s <= 0:
            return True
        if self.in_flight >= self.queue_limit:
            return False
        self.in_flight += 1
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        return True
