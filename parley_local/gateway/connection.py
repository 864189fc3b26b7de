"""One client connection as API Gateway tracks it: state, activity times, close code, the socket.

Why: the WebSocket server, the `@connections` API and the idle/max-duration
sweeper all act on the same connection; this object is the single place for
its lifecycle (connecting -> open -> closed), so that a PostToConnection can
never reach a socket whose `$connect` has not finished or that has closed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .events import ConnectionInfo

CONNECTING, OPEN, CLOSED = "connecting", "open", "closed"

# disconnectReason texts API Gateway uses
REASON_NO_STATUS = "Client-side close frame status not set"
REASON_GOING_AWAY = "Going away"
REASON_ABNORMAL = "Connection was closed abnormally"


def iso_ms(epoch_ms: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as GetConnection returns."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Connection:
    __slots__ = (
        "info", "ws", "state", "opened_mono", "last_active_mono", "last_active_ms",
        "close_code", "close_reason", "tasks", "disconnect_started",
    )

    def __init__(self, info: ConnectionInfo):
        self.info = info
        self.ws: web.WebSocketResponse | None = None
        self.state = CONNECTING
        self.opened_mono = time.monotonic()
        self.last_active_mono = self.opened_mono
        self.last_active_ms = float(info.connected_at)
        self.close_code: int | None = None  # set by whoever closes the socket server-side
        self.close_reason = ""
        self.tasks: set[asyncio.Task[Any]] = set()
        self.disconnect_started = False

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def is_open(self) -> bool:
        return self.state == OPEN and self.close_code is None and self.ws is not None and not self.ws.closed

    def touch(self) -> None:
        """Inbound or outbound traffic: resets the idle timer."""
        self.last_active_mono = time.monotonic()
        self.last_active_ms = time.time() * 1000

    async def send(self, data: str | bytes) -> bool:
        """Send one frame (text unless `data` is not UTF-8); False when the socket is gone."""
        ws = self.ws
        if self.state != OPEN or self.close_code is not None or ws is None or ws.closed:
            return False
        try:
            if isinstance(data, bytes):
                try:
                    await ws.send_str(data.decode("utf-8"))
                except UnicodeDecodeError:
                    await ws.send_bytes(data)
            else:
                await ws.send_str(data)
        except (ConnectionError, RuntimeError):
            return False
        self.touch()
        return True

    async def close(self, code: int, reason: str, frame_reason: str | None = None) -> None:
        """Close from the server side, recording the code and reason `$disconnect` will report.

        `frame_reason` is the reason text sent in the close frame (defaults to `reason`).
        """
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        ws = self.ws
        if ws is not None and not ws.closed:
            text = reason if frame_reason is None else frame_reason
            try:
                await ws.close(code=code, message=text.encode())
            except (ConnectionError, RuntimeError, asyncio.TimeoutError):
                pass

    def description(self) -> dict[str, Any]:
        """The GetConnection response body."""
        return {
            "connectedAt": iso_ms(self.info.connected_at),
            "identity": {"sourceIp": self.info.source_ip, "userAgent": self.info.user_agent},
            "lastActiveAt": iso_ms(self.last_active_ms),
        }
