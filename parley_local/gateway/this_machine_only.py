"""One middleware that keeps the gateway's AWS emulation to callers on this machine.

Why: nothing on the gateway's port checks a signature, so with `parley dev --host 0.0.0.0` anyone
on the network could otherwise read the dev secret from SSM, reach every table through the
forwarded DynamoDB calls, invoke any function with a made-up identity, or post to (and delete)
any connection. AWS's own stand-ins (moto, DynamoDB Local) listen on 127.0.0.1. What another
machine is told is what it would be told by AWS: a call an AWS SDK makes (an `X-Amz-Target` or a
SigV4 signature) gets the service's 403 `AccessDeniedException`; anything else gets the answer
API Gateway gives for a path it has no route for (`api_gateway_forbidden`, the gateway's
catch-all's own), so what other machines see of the port is API Gateway's surface and nothing more.

Why one middleware instead of a check in each handler: every route is for this machine only
unless it was added inside `open_to_the_network(app)`, so a route added later is covered without
anyone remembering to. What is open is what a client on another machine may use when the
developer opens the port: the WebSocket endpoint (and API Gateway's 403 for an unknown path),
and the application's own pages and dev tokens (`GatewayExtras.add_routes`). A call signed for a
service the gateway forwards (`other_services`) is AWS emulation whatever path it names.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from ..local_aws.other_services import aws_json, forwarded_service, signing_service
from .addresses import is_loopback_address

NOT_FROM_THIS_MACHINE = ("parley dev serves its local AWS services (SSM, DynamoDB, moto) to this machine only; "
                         "call them from here (127.0.0.1), not over the network.")
OPEN_ROUTES = web.AppKey("open_routes", set[AbstractRoute])
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A peer's address is parsed once, not on every request (`ipaddress` costs ~3 µs a call); peers are few.
_is_loopback_peer = lru_cache(maxsize=1024)(is_loopback_address)


def is_from_this_machine(request: web.Request) -> bool:
    """A loopback peer, or one that connected to this machine's own address from this machine (a
    handler reaching `https://{domainName}/{stage}` while `parley dev --host 0.0.0.0` serves a LAN)."""
    if _is_loopback_peer(request.remote):
        return True
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return bool(request.remote) and isinstance(sockname, tuple) and bool(sockname) and request.remote == sockname[0]


def api_gateway_forbidden() -> web.Response:
    """API Gateway's 403 for a path or method it has no route for. The gateway's catch-all answers
    with it, and so does `refusal` for another machine's non-AWS call: one answer, so a refused route
    looks to other machines exactly like one API Gateway does not have."""
    return web.json_response({"message": "Forbidden"}, status=403, headers={"x-amzn-ErrorType": "ForbiddenException"})


def is_aws_service_call(request: web.Request) -> bool:
    """Whether an AWS SDK made this call: a JSON-protocol `X-Amz-Target`, or a SigV4 signature (in
    `Authorization` or a presigned URL's query). Such a caller reads an AWS error's type; a browser or
    curl reads API Gateway's plain answer."""
    return "X-Amz-Target" in request.headers or signing_service(
        request.headers.get("Authorization", ""), request.query.get("X-Amz-Credential")) is not None


def refusal(request: web.Request) -> web.Response:
    """A caller on another machine refused: the AWS-style JSON 403 that says why to an AWS SDK's call,
    API Gateway's own `{"message":"Forbidden"}` to anything else."""
    if not is_aws_service_call(request):
        return api_gateway_forbidden()
    return aws_json(403, {"__type": "AccessDeniedException", "message": NOT_FROM_THIS_MACHINE},
                    headers={"x-amzn-ErrorType": "AccessDeniedException"})


@contextmanager
def open_to_the_network(app: web.Application) -> Iterator[None]:
    """The routes added to `app` inside this block answer callers on other machines too."""
    before = set(app.router.routes())
    yield
    app.setdefault(OPEN_ROUTES, set()).update(set(app.router.routes()) - before)


def is_open_route(request: web.Request) -> bool:
    """Whether the route `request` was matched to was added inside `open_to_the_network`."""
    return request.match_info.route in request.app.get(OPEN_ROUTES, ())


def is_open_to_the_network(request: web.Request) -> bool:
    """Whether the route `request` was matched to is open, and the request is not one `other_services` forwards."""
    return is_open_route(request) and forwarded_service(request) is None


@web.middleware
async def this_machine_only(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Refuses a caller on another machine before any handler or forwarder runs, unless the route is open."""
    if is_from_this_machine(request) or is_open_to_the_network(request):
        return await handler(request)
    return refusal(request)
