"""A gateway in a thread that also serves "another machine": a caller whose peer address is not this machine's.

Why a header instead of a second network interface: tests listen on 127.0.0.1 only, and every
caller there is this machine. One test-only outer middleware hands the rest of the chain a clone
of the request (`Request.clone(remote=...)`) whose peer is the address in `PEER_HEADER`;
everything after it (`this_machine_only`, the routes, `ParleyExtras`) is the gateway's own, and
the clone keeps the real transport, so its socket name is still 127.0.0.1. A browser sends the
header on every request with Playwright's `set_extra_http_headers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from parley_local.parley_extras import ParleyExtras

from .gateway_thread import RunningGateway

ANOTHER_MACHINE = "192.0.2.7"  # TEST-NET-1: never this machine
PEER_HEADER = "X-Test-Peer"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _peer_from_header(request: web.Request, handler: _Handler) -> web.StreamResponse:
    peer = request.headers.get(PEER_HEADER)
    return await handler(request.clone(remote=peer) if peer else request)


def lan_gateway(template: Path, record_dir: Path, *, client_dir: Path | None = None, tokens_for_other_machines: bool = False,
                add_routes: Callable[[web.Application], None] | None = None, **config: Any) -> RunningGateway:
    """A `RunningGateway` (not started) whose callers may name their peer in `PEER_HEADER`, with
    `ParleyExtras` as `parley dev [--dev-tokens-for-other-machines]` makes it. `add_routes` adds
    routes after the gateway built its app, as a later change to the gateway would."""
    gw = RunningGateway(template, record_dir, client_dir=client_dir, **config)
    assert isinstance(gw.gateway.extras, ParleyExtras)
    gw.gateway.extras = ParleyExtras(gw.gateway.extras.client_dir, tokens_for_other_machines=tokens_for_other_machines)
    build = gw.gateway._build_app

    def build_with_a_second_machine() -> web.Application:
        app = build()
        app.middlewares.insert(0, _peer_from_header)
        if add_routes is not None:
            add_routes(app)
        return app

    gw.gateway._build_app = build_with_a_second_machine  # type: ignore[method-assign]
    return gw
