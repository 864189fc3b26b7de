"""API Gateway's WebSocket size limits on top of aiohttp: 32 KB per frame, 128 KB per message, close 1009.

Why: aiohttp only limits whole messages. API Gateway also refuses any single
data frame over 32 KB, so a client that works locally with one 100 KB frame
would break on AWS. `FrameLimiter` sits in front of aiohttp's (C) frame
parser, reads only frame headers (no copy of payloads), and fails the
connection with 1009 exactly where aiohttp would for an oversized message.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError

FRAME_LIMIT = 32 * 1024
MESSAGE_LIMIT = 128 * 1024  # 131,072 bytes: server->client too (PostToConnection, route responses)
MESSAGE_TOO_BIG = "Message too big"  # the disconnectReason API Gateway reports with 1009


def message_bytes(data: str | bytes) -> int:
    """The size API Gateway measures a message by: its UTF-8 bytes, not its characters."""
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))


class FrameLimiter:
    """A pass-through for aiohttp's WebSocketReader that trips on data frames over `limit` bytes."""

    __slots__ = ("_inner", "_queue", "_limit", "_hdr", "_skip", "_tripped")

    def __init__(self, inner: Any, queue: Any, limit: int):
        self._inner = inner
        self._queue = queue
        self._limit = limit
        self._hdr = b""
        self._skip = 0
        self._tripped = False

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._tripped:
            return True, b""
        bad = self.scan(data)
        if bad < 0:
            return self._inner.feed_data(data)  # type: ignore[no-any-return]
        if bad > 0:
            self._inner.feed_data(data[:bad])  # deliver the frames before the offending one
        self._tripped = True
        self._queue.set_exception(WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, f"Frame exceeds {self._limit} bytes"))
        return True, b""

    def scan(self, data: bytes) -> int:
        """Advance over `data`; return the offset where an oversized data frame starts, or -1."""
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            had = len(self._hdr)
            buf = self._hdr + data[pos : pos + 14 - had]
            if len(buf) < 2:
                self._hdr = buf
                return -1
            b1 = buf[1]
            length = b1 & 0x7F
            hlen = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
            if len(buf) < hlen:
                self._hdr = buf
                return -1
            if length == 126:
                length = int.from_bytes(buf[2:4], "big")
            elif length == 127:
                length = int.from_bytes(buf[2:10], "big")
            if (buf[0] & 0x0F) < 8 and length > self._limit:
                return max(0, pos - had)
            pos += hlen - had
            self._hdr = b""
            self._skip = length
        return -1


class LimitedWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocketResponse with API Gateway's per-frame limit installed after the upgrade."""

    frame_limit = FRAME_LIMIT

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        proto = request.protocol
        tail = getattr(proto, "_message_tail", b"")
        super()._post_start(request, protocol, writer)
        inner = getattr(proto, "_payload_parser", None)
        queue = getattr(self, "_reader", None)
        if inner is None or queue is None:  # aiohttp internals changed: keep the message limit only
            return
        limiter = FrameLimiter(inner, queue, self.frame_limit)
        if tail and limiter.scan(bytes(tail)) >= 0:
            limiter._tripped = True
            queue.set_exception(WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "Frame too big"))
        proto._payload_parser = limiter
