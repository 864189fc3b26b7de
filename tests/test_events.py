"""The sample events in events/ are AWS-shaped (the powertools parser models accept them) and cover every route."""

from __future__ import annotations

import base64
import datetime
import json
import re
import time
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from aws_lambda_powertools.utilities.parser.models.apigw_websocket import (
    APIGatewayWebSocketConnectEventRequestContext,
)
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
MODELS = {
    "CONNECT": APIGatewayWebSocketConnectEventModel,
    "MESSAGE": APIGatewayWebSocketMessageEventModel,
    "DISCONNECT": APIGatewayWebSocketDisconnectEventModel,
}
ROOM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{15}=$")
CLF = "%d/%b/%Y:%H:%M:%S %z"


def _load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


ROUTE_EVENT_FILES = sorted(p.name for p in EVENTS.glob("*.json") if p.name != "authorizer.json")


def _template_route_keys() -> set[str]:
    template, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches
    return {r["Properties"]["RouteKey"] for r in template["Resources"].values()
            if r["Type"] == "AWS::ApiGatewayV2::Route"}


def _body(event: dict):
    try:
        return json.loads(event.get("body"))
    except (TypeError, ValueError):
        return None


def _jwt_parts(token: str) -> tuple[dict, dict]:
    def part(segment: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    header, payload, _signature = token.split(".")
    return part(header), part(payload)


def _check_request_context(ctx: dict) -> None:
    assert ctx["extendedRequestId"] == ctx["requestId"]
    assert ctx["messageDirection"] == "IN"
    assert CONNECTION_ID.match(ctx["connectionId"]), ctx["connectionId"]
    assert set(ctx["identity"]) == {"sourceIp"}
    assert ctx["domainName"] == f"{ctx['apiId']}.execute-api.us-east-1.amazonaws.com"
    # requestTime (CLF, seconds) and requestTimeEpoch (ms) describe the same instant
    when = datetime.datetime.strptime(ctx["requestTime"], CLF)
    assert int(when.timestamp()) == ctx["requestTimeEpoch"] // 1000
    assert isinstance(ctx["connectedAt"], int) and isinstance(ctx["requestTimeEpoch"], int)
    assert 1_500_000_000_000 < ctx["connectedAt"] <= ctx["requestTimeEpoch"], "epoch milliseconds expected"


def test_there_are_route_events():
    assert len(ROUTE_EVENT_FILES) >= 11


@pytest.mark.parametrize("name", ROUTE_EVENT_FILES)
def test_event_is_aws_shaped(name):
    event = _load(name)
    ctx = event["requestContext"]
    model = MODELS[ctx["eventType"]]
    parsed = model.model_validate(event)
    assert parsed.request_context.connection_id == ctx["connectionId"]
    _check_request_context(ctx)
    assert event["isBase64Encoded"] is False
    assert ctx["routeKey"] in _template_route_keys()
    # Every event after the handshake carries what the authorizer returned.
    assert set(ctx["authorizer"]) >= {"principalId", "name"}
    if ctx["eventType"] == "MESSAGE":
        assert isinstance(event["body"], str)
        assert "headers" not in event
        assert ctx["routeKey"] not in ("$connect", "$disconnect")
    else:
        assert "body" not in event
        assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}


def test_request_and_message_ids_are_unique():
    contexts = [_load(n)["requestContext"] for n in ROUTE_EVENT_FILES + ["authorizer.json"]]
    request_ids = [c["requestId"] for c in contexts]
    message_ids = [c["messageId"] for c in contexts if "messageId" in c]
    assert len(set(request_ids)) == len(request_ids)
    assert len(set(message_ids)) == len(message_ids)


def test_every_route_has_an_event():
    by_route: dict[str, list[dict]] = {}
    for name in ROUTE_EVENT_FILES:
        event = _load(name)
        by_route.setdefault(event["requestContext"]["routeKey"], []).append(event)
    keys = _template_route_keys()
    assert keys, "no routes in the template"
    assert set(by_route) == keys
    for key in keys - {"$connect", "$disconnect", "$default"}:
        for event in by_route[key]:
            body = _body(event)
            assert isinstance(body, dict), f"{key}: body must be a JSON object"
            assert body["type"] == key
            assert isinstance(body.get("data", {}), dict)
    for event in by_route["$default"]:
        body = _body(event)
        assert not isinstance(body, dict) or body.get("type") not in keys, "$default event would be routed elsewhere"


def test_event_file_names_follow_the_route_folders():
    for name in ROUTE_EVENT_FILES:
        route = _load(name)["requestContext"]["routeKey"]
        assert name == route.lstrip("$") + ".json"


def test_message_payloads_follow_the_protocol():
    for name in ROUTE_EVENT_FILES:
        body = _body(_load(name))
        if not isinstance(body, dict):
            continue
        assert set(body) <= {"type", "data"}
        data = body.get("data", {})
        if "roomId" in data:
            assert ROOM_ID.match(data["roomId"]), name
        for field in ("messageId", "before", "since"):
            if field in data:
                assert ULID.match(data[field]), (name, field)
        if "limit" in data:
            assert 1 <= data["limit"] <= 100
        if body["type"] == "chat_message":
            assert 1 <= len(data["message"]) <= 4000


def test_connect_event():
    event = _load("connect.json")
    ctx = event["requestContext"]
    assert ctx["eventType"] == "CONNECT" and ctx["routeKey"] == "$connect"
    assert "messageId" not in ctx
    assert event["queryStringParameters"]["token"]
    assert event["multiValueQueryStringParameters"] == {k: [v] for k, v in event["queryStringParameters"].items()}
    assert event["headers"]["Origin"].startswith("http")
    assert event["headers"]["Host"] == ctx["domainName"]
    assert {"Sec-WebSocket-Key", "Sec-WebSocket-Version"} <= set(event["headers"])
    assert ctx["authorizer"] == {"principalId": "alice", "name": "Alice"}


def test_disconnect_event():
    event = _load("disconnect.json")
    ctx = event["requestContext"]
    assert ctx["eventType"] == "DISCONNECT" and ctx["routeKey"] == "$disconnect"
    assert ctx["disconnectStatusCode"] == 1001
    assert ctx["disconnectReason"] == "Going away"
    assert set(event["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}
    connect = _load("connect.json")["requestContext"]
    assert ctx["connectionId"] == connect["connectionId"] and ctx["connectedAt"] == connect["connectedAt"]


def test_authorizer_event():
    event = _load("authorizer.json")
    assert event["type"] == "REQUEST"
    ctx = event["requestContext"]
    APIGatewayWebSocketConnectEventRequestContext.model_validate(ctx)
    _check_request_context(ctx)
    assert "authorizer" not in ctx, "the authorizer runs before there is an authorizer context"
    m = re.fullmatch(r"arn:aws:execute-api:([a-z0-9-]+):(\d{12}):(\w+)/([^/]+)/\$connect", event["methodArn"])
    assert m, event["methodArn"]
    assert (m.group(3), m.group(4)) == (ctx["apiId"], ctx["stage"])
    assert ctx["domainName"].endswith(f".{m.group(1)}.amazonaws.com")
    assert event["queryStringParameters"]["token"]
    assert event["multiValueQueryStringParameters"] == {k: [v] for k, v in event["queryStringParameters"].items()}
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    assert "Origin" in event["headers"]
    assert event["stageVariables"] == {}


@pytest.mark.parametrize("name", ["authorizer.json", "connect.json"])
def test_sample_tokens_are_obviously_fake(name):
    token = _load(name)["queryStringParameters"]["token"]
    header, payload = _jwt_parts(token)
    assert header["alg"] == "HS256"
    assert payload["sub"] == "alice"
    assert payload["exp"] < time.time() - 365 * 86400, "sample tokens must be long expired"
    assert "FAKE" in token.split(".")[2]


def test_events_share_one_connection_and_api():
    contexts = [_load(n)["requestContext"] for n in ROUTE_EVENT_FILES]
    assert len({(c["apiId"], c["stage"], c["connectionId"], c["connectedAt"]) for c in contexts}) == 1
