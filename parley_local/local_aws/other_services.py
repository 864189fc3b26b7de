"""AWS calls for services the gateway does not serve itself, forwarded to where they are served.

Workers get `AWS_ENDPOINT_URL` = the gateway's port, so a function's call to any service without
an endpoint variable of its own arrives here. The service is read from the request's SigV4
credential scope (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`, in the `Authorization`
header or a presigned URL's query), which every AWS SDK sends. `dynamodb` (DynamoDB Streams signs
with it) goes to the DynamoDB the functions use; `ssm`, `lambda` and `execute-api` are the
gateway's own routes; anything else goes to moto's server, started by the first such call (one
console line says so). Requests without a signature are the gateway's (a browser, a WebSocket
client) and are left alone.

These services, and the SSM `parameter_store` beside them, hold the dev JWT secret and every
table: the gateway's `this_machine_only` middleware, in front of this one, refuses such calls from
other machines (`forwarded_service` tells it which calls this module takes).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from .services import LocalAws

SERVED_BY_THE_GATEWAY = frozenset({"execute-api", "lambda", "ssm"})
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length",
                         "proxy-authorization", "proxy-authenticate", "trailer"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def aws_json(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> web.Response:
    """An AWS JSON 1.1 answer (SSM's protocol; botocore reads an error's code from `__type`)."""
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/x-amz-json-1.1",
                        headers={"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})


def signing_service(authorization: str, query_credential: str | None = None) -> str | None:
    """The service a SigV4-signed request is for, or None when it is not signed."""
    if query_credential:
        parts = query_credential.split("/")
        return parts[3] if len(parts) == 5 and parts[4] == "aws4_request" else None
    if not authorization.startswith("AWS4-HMAC-SHA256"):
        return None
    match = _SCOPE.search(authorization)
    return match.group(1) if match else None


def forwarded_service(request: web.Request) -> str | None:
    """The service of a signed call this module forwards (one the gateway does not serve itself), or None."""
    service = signing_service(request.headers.get("Authorization", ""), request.query.get("X-Amz-Credential"))
    return None if service in SERVED_BY_THE_GATEWAY else service


class OtherAwsServices:
    """An aiohttp middleware that forwards signed calls for services the gateway does not serve."""

    def __init__(self, aws: LocalAws, announce: Callable[[str], None]):
        self.aws = aws
        self.announce = announce
        self._session: aiohttp.ClientSession | None = None
        self._starting: asyncio.Lock | None = None
        self._closing = False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        service = forwarded_service(request)
        if service is None:
            return await handler(request)
        try:
            endpoint = await self._endpoint(service)
        except Exception as error:  # moto could not start: say so to the caller, as a service error
            return web.json_response({"message": f"parley dev could not start moto to serve {service!r}: {error}"}, status=503)
        return await self._forward(request, endpoint)

    async def _endpoint(self, service: str) -> str:
        if service == "dynamodb":
            return self.aws.dynamodb_endpoint
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self.aws.moto is None:
                self.announce(f"AWS service {service!r} called: starting moto's server for the services parley dev does not serve itself ...")
                endpoint = await asyncio.to_thread(self.aws.moto_endpoint)
                self.announce(f"moto serves {service!r} (and any other such service) at {endpoint}")
            assert self.aws.moto is not None
            return self.aws.moto.endpoint

    async def _forward(self, request: web.Request, endpoint: str) -> web.Response:
        if self._closing:  # a session made now would outlive close()
            return web.json_response({"message": "parley dev is shutting down; the local AWS services are stopping."},
                                     status=503)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with self._session.request(request.method, endpoint + request.path_qs, headers=headers,
                                             data=await request.read(), allow_redirects=False) as answer:
                body = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=body, headers=kept)
        except aiohttp.ClientError as error:
            return web.json_response({"message": f"parley dev could not reach the local service at {endpoint}: {error}"},
                                     status=502)

    async def close(self) -> None:
        """After the gateway's runner is cleaned up (no request in flight); no session is made after this."""
        self._closing = True
        if self._session is not None:
            await self._session.close()
            self._session = None
