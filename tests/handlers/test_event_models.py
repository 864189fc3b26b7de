"""The API Gateway event models the routes parse with (`parley.aws.apigw_events`): what they keep
lighter than Powertools' models still refuses what Powertools' models refuse."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketConnectEventModel, APIGatewayWebSocketMessageEventModel
from pydantic import ValidationError

from parley.aws.apigw_events import ConnectEvent, MessageEvent
from parley_testing.lambda_events import connect_event, connection_id, message_event

EVENTS = {
    "connect": (lambda: connect_event(connection_id(1), "alice", "Alice"), ConnectEvent, APIGatewayWebSocketConnectEventModel),
    "message": (lambda: message_event(connection_id(1), "alice", {"type": "ping"}), MessageEvent, APIGatewayWebSocketMessageEventModel),
}


@pytest.mark.parametrize("kind", list(EVENTS))
@pytest.mark.parametrize("source_ip", ["127.0.0.1", "2001:db8::7"])
def test_the_source_ip_is_kept_as_api_gateway_wrote_it(kind, source_ip):
    make, model, _ = EVENTS[kind]
    event = make()
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    context = parse(event=event, model=model).request_context
    assert context.identity.source_ip == source_ip
    assert context.authorizer.principal_id == "alice" and context.request_id == event["requestContext"]["requestId"]


@pytest.mark.parametrize("kind", list(EVENTS))
def test_an_event_without_a_source_ip_is_refused_as_by_powertools_model(kind):
    make, model, powertools_model = EVENTS[kind]
    event = make()
    del event["requestContext"]["identity"]["sourceIp"]
    for refusing in (powertools_model, model):
        with pytest.raises(ValidationError):
            refusing.model_validate(event)
