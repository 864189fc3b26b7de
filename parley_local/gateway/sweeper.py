"""Close connections that were idle too long or open too long, as API Gateway does (1001 "Going away").

Why a task of its own: AWS closes a socket after 10 minutes without traffic and after 2 hours
in any case; clients must reconnect, and a local gateway that never closes them hides that.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping

from .connection import OPEN, REASON_GOING_AWAY, Connection


async def sweep(
    connections: Mapping[str, Connection],
    idle_timeout: float,
    max_duration: float,
    spawn: Callable[[Awaitable[Any]], object],
) -> None:
    """Run until cancelled, checking a few times per shortest limit (at most every 5 s)."""
    tick = min(5.0, max(0.05, min(idle_timeout, max_duration) / 10))
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        for conn in list(connections.values()):
            if conn.state != OPEN or conn.close_code is not None:
                continue
            if now - conn.last_active_mono >= idle_timeout or now - conn.opened_mono >= max_duration:
                spawn(conn.close(1001, REASON_GOING_AWAY))
