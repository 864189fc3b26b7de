"""Lambda glue shared by every function: event in, domain call, response out.

Each `functions/<route>/app.py` is one line that picks its route here. Clients and the store
are created once per execution environment, outside the handler, so warm invocations pay for
neither.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from aws_lambda_powertools.utilities.parser import parse

from . import protocol as p
from .config import settings
from .events import ConnectEvent, DisconnectEvent, MessageEvent
from .observability import count, logger, metrics, tracer
from .protocol import ErrorCode, ProtocolError
from .sender import sender_for
from .rate_limits import OverLimitMemory, RateLimits
from .service import Caller, ChatService
from .store import DynamoChatStore

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

KNOWN_TYPES = ", ".join(sorted(p.REQUEST_MODELS))
_store = DynamoChatStore(settings.connection_ttl_seconds, settings.idempotency_ttl_seconds)
# Who this environment already refused for flooding lives as long as the environment does.
_over_limit = OverLimitMemory()


def _instrumented(handler: Handler) -> Handler:
    traced = tracer.capture_lambda_handler(handler) if tracer is not None else handler
    flushed = metrics.log_metrics(traced)
    return logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)(flushed)


def _management_endpoint(domain_name: str, stage: str) -> str:
    # The standard boto3 variable wins when set (the local gateway sets it); else the API's own URL.
    return os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI") or f"https://{domain_name}/{stage}"


def _service(domain_name: str, stage: str) -> ChatService:
    sender = sender_for(_management_endpoint(domain_name, stage), settings.fanout_max_in_flight)
    limits = RateLimits(settings.chat_rate_limit, settings.signal_rate_limit, settings.rate_window_seconds)
    return ChatService(
        _store, sender, max_message_length=settings.max_message_length, rate_limits=limits, over_limit=_over_limit, metric=count
    )


def _caller(context: Any) -> Caller:
    authorizer = context.authorizer
    return Caller(context.connection_id, authorizer.principal_id, authorizer.name or authorizer.principal_id)


def _reply(frame: dict[str, Any] | None) -> dict[str, Any]:
    if frame is None:
        return {"statusCode": 200}
    return {"statusCode": 200, "body": json.dumps(frame, separators=(",", ":"), ensure_ascii=False)}


def message_route(route_key: str) -> Handler:
    """The handler for a client type's route, or for `$default` (frames no route matched)."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parsed = parse(event=event, model=MessageEvent)
        ctx = parsed.request_context
        logger.append_keys(connection_id=ctx.connection_id, route=ctx.route_key)
        frame: dict[str, Any] | None = None
        request_type = None if route_key == "$default" else route_key
        try:
            frame = p.parse_envelope(parsed.body if isinstance(parsed.body, str) else None)
            if route_key == "$default":
                raw_type = frame.get("type")
                request_type = raw_type if isinstance(raw_type, str) else None
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TYPE,
                    f"Unknown type {raw_type!r}: send one of {KNOWN_TYPES}."
                    if raw_type is not None
                    else f"The frame has no `type`: send one of {KNOWN_TYPES}.",
                )
            return _reply(_service(ctx.domain_name, ctx.stage).handle(route_key, frame, _caller(ctx)))
        except ProtocolError as error:
            logger.info("request rejected", extra={"code": error.code, "details": error.details})
            return _reply(p.error_frame(error, request_type=request_type, client_message_id=p.client_message_id_of(frame)))
        except Exception:
            logger.exception("request failed")
            error = ProtocolError(
                ErrorCode.INTERNAL_ERROR,
                f"Something went wrong on our side; try again. Quote request id {ctx.request_id} when reporting it.",
            )
            return _reply(p.error_frame(error, request_type=request_type, client_message_id=p.client_message_id_of(frame)))

    return _instrumented(handler)


def connect_route() -> Handler:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parsed = parse(event=event, model=ConnectEvent)
        ctx = parsed.request_context
        logger.append_keys(connection_id=ctx.connection_id, route="$connect")
        _service(ctx.domain_name, ctx.stage).connect(_caller(ctx), int(ctx.connected_at.timestamp() * 1000))
        return {"statusCode": 200}

    return _instrumented(handler)


def disconnect_route() -> Handler:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parsed = parse(event=event, model=DisconnectEvent)
        ctx = parsed.request_context
        logger.append_keys(connection_id=ctx.connection_id, route="$disconnect")
        logger.info("disconnected", extra={"code": ctx.disconnect_status_code, "reason": ctx.disconnect_reason})
        _service(ctx.domain_name, ctx.stage).disconnect(_caller(ctx))
        return {"statusCode": 200}

    return _instrumented(handler)
