"""`$connect`'s Lambda glue, kept out of `lambda_routes` so its cold start imports neither the chat
service nor the store nor the sender: `$connect` calls no AWS API, and it runs before every
connection, next to the authorizer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import parse

from .apigw_events import ConnectEvent
from .observability import Handler, instrumented, logger


def connect_route() -> Handler:
    """`$connect` accepts what the authorizer let in and writes nothing: no route reads a record of open
    connections (API Gateway knows them, and a post to a gone one answers 410). Parsing the event still
    refuses a `$connect` without the authorizer's context, so a route deployed without it fails closed."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ctx = parse(event=event, model=ConnectEvent).request_context
        logger.append_keys(connection_id=ctx.connection_id, route="$connect", correlation_id=ctx.request_id)
        logger.info("connected", extra={"user_id": ctx.authorizer.principal_id})
        return {"statusCode": 200}

    return instrumented(handler)
