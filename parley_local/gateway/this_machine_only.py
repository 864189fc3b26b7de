"""One middleware that keeps the gateway's AWS emulation to callers on this machine.

Why: nothing on the gateway's port checks a signature, so with `parley dev --host 0.0.0.0` anyone
on the network could otherwise read the dev secret from SSM, reach every table through the
forwarded DynamoDB calls, invoke any function with a made-up identity, or post to (and delete)
any connection. AWS's own stand-ins (moto, DynamoDB Local) listen on 127.0.0.1; this answers
other machines as they would be refused: a 403 `AccessDeniedException`.

Why one middleware instead of a check in each handler: every route is for this machine only
unless it was added inside `open_to_the_network(app)`, so a route added later is covered without
anyone remembering to. What is open is what a client on another machine may use when the
developer opens the port: the WebSocket endpoint (and API Gateway's 403 for an unknown path),
and the application's own pages and dev tokens (`GatewayExtras.add_routes`). A call signed for a
service the gateway forwards (`other_services`) is AWS emulation whatever path it names.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from ..local_aws.other_services import aws_json, forwarded_service
from .addresses import is_loopback_address

NOT_FROM_THIS_MACHINE = ("parley dev serves its local AWS services (SSM, DynamoDB, moto) to this machine only; "
                         "call them from here (127.0.0.1), not over the network.")
OPEN_ROUTES = web.AppKey("open_routes", set[AbstractRoute])
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_from_this_machine(request: web.Request) -> bool:
    """A loopback peer, or one that connected to this machine's own address from this machine (a
    handler reaching `https://{domainName}/{stage}` while `parley dev --host 0.0.0.0` serves a LAN)."""
    if is_loopback_address(request.remote):
        return True
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return bool(request.remote) and isinstance(sockname, tuple) and bool(sockname) and request.remote == sockname[0]


def refusal() -> web.Response:
    """The AWS-style JSON 403 that tells a caller on another machine why it is refused."""
    return aws_json(403, {"__type": "AccessDeniedException", "message": NOT_FROM_THIS_MACHINE},
                    headers={"x-amzn-ErrorType": "AccessDeniedException"})


@contextmanager
def open_to_the_network(app: web.Application) -> Iterator[None]:
    """The routes added to `app` inside this block answer callers on other machines too."""
    before = set(app.router.routes())
    yield
    app.setdefault(OPEN_ROUTES, set()).update(set(app.router.routes()) - before)


def is_open_to_the_network(request: web.Request) -> bool:
    """Whether the route `request` was matched to is open, and the request is not one `other_services` forwards."""
    route = request.match_info.route
    return route in request.app.get(OPEN_ROUTES, ()) and forwarded_service(request) is None


@web.middleware
async def this_machine_only(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Refuses a caller on another machine before any handler or forwarder runs, unless the route is open."""
    if is_from_this_machine(request) or is_open_to_the_network(request):
        return await handler(request)
    return refusal()
