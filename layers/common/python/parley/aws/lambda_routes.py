"""The Lambda handlers of the functions that use the chat, one factory per kind of route: event in,
`ChatService` call, response out.

Each `functions/<route>/app.py` is one line that picks its route here. The store and the
over-limit memory are created once per execution environment, outside the handler, so warm
invocations pay for neither; the sender is cached per endpoint in `management_api`. `$connect`
and the authorizer use none of that and have modules of their own (`connect_route`,
`authorizer_route`), so their cold starts do not import it.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.parser import parse

from ..core.access import ClaimError, Grants
from ..core.model import BadFanoutEvent, Caller, PresenceChange, ShardJob, fanout_work_of_event
from ..core.ports import ShardDispatcher
from ..core.protocol import encode_text
from ..core.rate_limits import AllowanceLedger, OverLimitMemory, RateLimits
from ..core.service import ChatService
from .apigw_events import DisconnectEvent, MessageEvent
from .config import settings
from .dynamodb_store import DynamoChatStore
from .lambda_invoke import LambdaShardDispatcher
from .management_api import sender_for
from .observability import Handler, count, instrumented, logger

_store = DynamoChatStore(settings.connection_ttl_seconds, settings.idempotency_ttl_seconds)
# Who this environment already refused for flooding lives as long as the environment does.
_over_limit = OverLimitMemory()
# So does what it accepted of each user's allowance without writing the shared counter yet.
_ledger = AllowanceLedger()
_shards = LambdaShardDispatcher(settings.fanout_function_name) if settings.fanout_function_name else None


# In order: the standard boto3 override (the local gateway sets it), then the API's execute-api URL
# that the template sets, which stays right behind a custom domain (there `https://{domainName}/{stage}`
# from the event has the custom host and a base path, not the stage).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "MANAGEMENT_API_ENDPOINT")


def management_endpoint(domain_name: str | None, stage: str | None) -> str:
    """The `@connections` endpoint: an endpoint variable, else the event's `https://{domainName}/{stage}`."""
    for variable in ENDPOINT_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    if not domain_name or not stage:
        raise ValueError(f"no @connections endpoint: the event has no domainName/stage and {' / '.join(ENDPOINT_VARIABLES)} are unset")
    return f"https://{domain_name}/{stage}"


def _service(domain_name: str | None, stage: str | None) -> ChatService:
    return _service_for_endpoint(management_endpoint(domain_name, stage))


def _service_for_endpoint(endpoint: str, shards: ShardDispatcher | None = None) -> ChatService:
    """`shards`: where large rooms' fan-out goes; None: this environment's `_shards` (FANOUT_FUNCTION_NAME)."""
    sender = sender_for(endpoint, settings.fanout_max_in_flight)
    limits = RateLimits(settings.chat_rate_limit, settings.signal_rate_limit, settings.rate_window_seconds,
                        settings.chat_rate_batch, settings.signal_rate_batch, settings.join_rate_limit, settings.join_rate_batch)
    return ChatService(
        _store,
        sender,
        max_message_length=settings.max_message_length,
        rate_limits=limits,
        over_limit=_over_limit,
        ledger=_ledger,
        metric=count,
        logger=logger,
        presence_threshold=settings.presence_threshold,
        shards=shards if shards is not None else _shards,
        fanout_shard_size=settings.fanout_shard_size,
        fanout_page_size=settings.fanout_page_size,
    )


def _grants(rooms: str | None) -> Grants:
    """The connection's grants: its claim as the authorizer encoded it, else the RoomAccess mode."""
    if rooms is None:
        return Grants.for_mode(settings.room_access)
    try:
        return Grants.decode(rooms)
    except ClaimError as error:  # only our authorizer writes this: refuse everything rather than guess
        logger.error("unreadable rooms context", extra={"reason": str(error)})
        return Grants(())


def _caller(context: Any) -> Caller:
    authorizer = context.authorizer
    return Caller(
        context.connection_id, authorizer.principal_id, authorizer.name or authorizer.principal_id, _grants(authorizer.rooms)
    )


def _reply(frame: dict[str, Any] | None) -> dict[str, Any]:
    if frame is None:
        return {"statusCode": 200}
    return {"statusCode": 200, "body": encode_text(frame)}


def message_route(route_key: str) -> Handler:
    """The handler for a client type's route, or for `$default` (frames no route matched)."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parsed = parse(event=event, model=MessageEvent)
        ctx = parsed.request_context
        logger.append_keys(connection_id=ctx.connection_id, route=ctx.route_key, correlation_id=ctx.request_id)
        body = parsed.body if isinstance(parsed.body, str) else None
        service = _service(ctx.domain_name, ctx.stage)
        return _reply(service.handle_frame(route_key, body, _caller(ctx), request_id=ctx.request_id))

    return instrumented(handler)


def disconnect_route() -> Handler:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ctx = parse(event=event, model=DisconnectEvent).request_context
        logger.append_keys(connection_id=ctx.connection_id, route="$disconnect", correlation_id=ctx.request_id)
        logger.info("disconnected", extra={"code": ctx.disconnect_status_code, "reason": ctx.disconnect_reason})
        user_id = ctx.authorizer.principal_id if ctx.authorizer is not None else None
        _service(ctx.domain_name, ctx.stage).disconnect(ctx.connection_id, user_id)
        return {"statusCode": 200}

    return instrumented(handler)


def _presence_change(image: dict[str, Any]) -> PresenceChange:
    """A `p#` record's NewImage (DynamoDB JSON, as the stream delivers it) as a domain change."""
    return PresenceChange(
        image["roomId"]["S"], image["userId"]["S"], image["name"]["S"], image["change"]["S"] == "joined", int(image["atMs"]["N"])
    )


def _broadcast_service(shards: ShardDispatcher | None = None) -> ChatService:
    """The service for functions API Gateway does not invoke: the endpoint comes from the environment."""
    return _service_for_endpoint(management_endpoint(None, None), shards)


def _own_shards() -> ShardDispatcher | None:
    """A continuation dispatches its shards to this same function: Lambda names it in the environment
    (the template cannot: a function's own `!Ref` in its variables is a circular reference)."""
    global _self_shards
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if _self_shards is None and name:
        _self_shards = LambdaShardDispatcher(name)
    return _self_shards


_self_shards: ShardDispatcher | None = None


def fanout_route() -> Handler:
    """The fan-out function: one slice of a large room's broadcast, or the reading of the rest of a
    room beyond the handler's page (which dispatches that part's slices); an async invocation each.

    An exception fails the invocation, so Lambda retries it (the claims, and the continuation's
    recorded page plans, keep anyone from getting it twice) and, after its retries, sends the event
    to the on-failure queue. So does an event Parley cannot have sent (validated, never acted on)."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.append_keys(route="fanout")
        try:
            work = fanout_work_of_event(event)
        except BadFanoutEvent as error:
            logger.error("fan-out event refused", extra={"reason": str(error)})
            raise
        where = {"shard": work.shard} if isinstance(work, ShardJob) else {"continue_after": work.after}
        logger.append_keys(room=work.room_id, delivery_id=work.delivery_id, **where)
        result = _broadcast_service(_own_shards()).run_fanout(work)
        return {"delivered": len(result.delivered), "gone": len(result.gone), "failed": len(result.failed)}

    return instrumented(handler)


def presence_route() -> Handler:
    """The presence function: a batch of `p#` inserts from the memberships stream (the event
    source mapping filters and batches them for `PresenceIntervalMs`) becomes at most one
    `presence_update` per room. A failure raises, so the batch is retried (and, after the
    mapping's retries, goes to the on-failure queue); joins never wait for it."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = [r for r in event.get("Records", []) if r.get("eventName") == "INSERT"]
        changes = [_presence_change(r["dynamodb"]["NewImage"]) for r in records]
        logger.append_keys(route="presence")
        _broadcast_service().announce_presence(changes)
        return {"changes": len(changes)}

    return instrumented(handler)
