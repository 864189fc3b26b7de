"""Size limits on the handshake request, refused with HTTP/1.1 answers a WebSocket client can read.

Why: aiohttp's parser refuses a request line or header over 8190 bytes itself, with an
`HTTP/1.0 400` that WebSocket clients reject as a protocol error (they expect HTTP/1.1),
so a user with a large token in `?token=` saw a broken connection instead of a status.
The parser's own limits are raised far out of reach (`PARSER_LIMITS`, passed to the
AppRunner) and this middleware applies the gateway's limits with proper answers:
a URL over 8 KB gets 414 (the URL limit in front of API Gateway's edge), a request
line plus headers over 10 KB gets 431 (API Gateway's documented 10,240-byte quota for
"request line and header values").
"""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from aiohttp import web

__all__ = ["MAX_REQUEST_BYTES", "MAX_URL_BYTES", "PARSER_LIMITS", "request_size_limits", "size_refusal"]

MAX_URL_BYTES = 8192
MAX_REQUEST_BYTES = 10240
# Far above the limits below, so the parser itself never has to refuse (and answer HTTP/1.0).
PARSER_LIMITS = {"max_line_size": 1024 * 1024, "max_field_size": 1024 * 1024}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refusal(status: int, message: str) -> web.Response:
    response = web.Response(status=status, text=json.dumps({"message": message}), content_type="application/json")
    response.force_close()  # the rest of an oversized request is not worth reading
    return response


def size_refusal(request: web.Request) -> web.Response | None:
    """The 414 or 431 for a request over the gateway's limits, or None when it is within them."""
    url_bytes = len(request.raw_path.encode("utf-8", "surrogateescape"))
    if url_bytes > MAX_URL_BYTES:
        return _refusal(414, f"Request-URI Too Long: {url_bytes} bytes, the limit is {MAX_URL_BYTES}")
    request_line = len(request.method) + 1 + url_bytes + len(" HTTP/1.1")
    header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
    if request_line + header_bytes > MAX_REQUEST_BYTES:
        return _refusal(431, f"Request Header Fields Too Large: request line and headers exceed {MAX_REQUEST_BYTES} bytes")
    return None


@web.middleware
async def request_size_limits(request: web.Request, handler: _Handler) -> web.StreamResponse:
    refused = size_refusal(request)
    return refused if refused is not None else await handler(request)
