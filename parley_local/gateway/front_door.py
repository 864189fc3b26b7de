"""The gateway's one middleware: the size limits, `this_machine_only` and `other_services` in one pass.

Why one: every request, a WebSocket handshake included, went through three middlewares, each a
coroutine wrapped around the next, and for a WebSocket the three frames live as long as its socket.
Almost every request passes all three untouched (within the size limits, not a call forwarded to
another AWS service, from this machine or on an open route); for those this middleware hands back
the route handler's own coroutine, adding no frame at all. Any other request goes through the three
middlewares as before, in the same order, so each answer is theirs, byte for byte.
"""

from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable

from aiohttp import web

from ..local_aws.other_services import OtherAwsServices, forwarded_service
from .handshake_limits import request_size_limits, size_refusal
from .this_machine_only import is_from_this_machine, is_open_route, this_machine_only

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Middleware = Callable[[web.Request, _Handler], Awaitable[web.StreamResponse]]


def front_door(forwarder: OtherAwsServices) -> _Middleware:
    """The middleware for an app whose signed calls to other services `forwarder` forwards."""

    @web.middleware
    def checked(request: web.Request, handler: _Handler) -> Awaitable[web.StreamResponse]:
        if (size_refusal(request) is None and forwarded_service(request) is None
                and (is_from_this_machine(request) or is_open_route(request))):
            return handler(request)  # what the three would do: the handler's answer, unchanged
        return request_size_limits(request, partial(this_machine_only, handler=partial(forwarder.middleware, handler=handler)))

    return checked
