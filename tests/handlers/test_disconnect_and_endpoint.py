"""`$disconnect` clean-up runs whatever optional fields its event lacks, `$connect` accepts only what
the authorizer let in, and the functions find `@connections` through the endpoint the template sets
before the event's `domainName`."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from parley.aws import lambda_routes
from parley_testing.chat_world import alice_and_bob_in_lobby
from parley_testing.lambda_events import connect_event, connection_id, disconnect_event

# Each is something the Powertools model requires and an event can arrive without.
MISSING = {
    "authorizer context": ("requestContext", "authorizer"),
    "close code": ("requestContext", "disconnectStatusCode"),
    "close reason": ("requestContext", "disconnectReason"),
    "headers": ("headers",),
    "identity": ("requestContext", "identity"),
    "connectedAt": ("requestContext", "connectedAt"),
    "domainName": ("requestContext", "domainName"),
    "requestId": ("requestContext", "requestId"),
}


def _without(event: dict, path: tuple[str, ...]) -> dict:
    out = copy.deepcopy(event)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent.pop(path[-1], None)
    return out


def _rows_of(world, connection_id: str) -> list[str]:
    """The connection's memberships: all a connection leaves in the tables."""
    return [item["roomId"]["S"] for item in world.items("MembershipsTable") if item.get("connectionId", {}).get("S") == connection_id]


@pytest.mark.parametrize("missing", list(MISSING))
def test_disconnect_cleans_up_whatever_is_missing(world, missing):
    alice, bob = alice_and_bob_in_lobby(world)
    assert _rows_of(world, bob.connection_id)
    event = _without(disconnect_event(bob.connection_id, bob.user_id), MISSING[missing])
    alice.take()
    world.gone.add(bob.connection_id)
    assert world.invoke("disconnect", event)["statusCode"] == 200
    world.collect()  # deliver the posts the function made
    assert _rows_of(world, bob.connection_id) == []
    left = [f for f in alice.take() if f["type"] == "user_left"]
    # Without the authorizer's context the user is unknown: clean-up, but no announcement.
    assert [f["data"]["userId"] for f in left] == ([] if missing == "authorizer context" else [bob.user_id])


def test_a_malformed_authorizer_context_does_not_stop_the_clean_up(world):
    alice, bob = alice_and_bob_in_lobby(world)
    event = disconnect_event(bob.connection_id, bob.user_id)
    event["requestContext"]["authorizer"] = {"principalId": ""}
    assert world.invoke("disconnect", event)["statusCode"] == 200
    assert _rows_of(world, bob.connection_id) == []


def test_each_invocation_logs_with_its_own_request_id_as_correlation_id(world, logs):
    from parley.aws.observability import logger

    alice, bob = alice_and_bob_in_lobby(world)
    first, second = disconnect_event(alice.connection_id, alice.user_id), disconnect_event(bob.connection_id, bob.user_id)
    del second["requestContext"]["requestId"]
    level = logger.log_level
    logger.setLevel("INFO")  # the template's default; the handler tests run at WARNING
    try:
        world.invoke("disconnect", first)
        world.invoke("disconnect", second)
    finally:
        logger.setLevel(level)
    lines = [line for line in logs.lines if line["message"] == "disconnected"]
    assert [(line["connection_id"], line.get("correlation_id")) for line in lines] == [
        (alice.connection_id, first["requestContext"]["requestId"]), (bob.connection_id, None)]


def test_connect_logs_who_connected_and_fails_closed_without_the_authorizers_context(world, logs):
    from parley.aws.observability import logger

    event = connect_event(connection_id(1), "alice", "Alice")
    level = logger.log_level
    logger.setLevel("INFO")
    try:
        assert world.invoke("connect", event) == {"statusCode": 200}
    finally:
        logger.setLevel(level)
    lines = [line for line in logs.lines if line["message"] == "connected"]
    assert [(line["connection_id"], line["user_id"], line["correlation_id"]) for line in lines] == [
        (connection_id(1), "alice", event["requestContext"]["requestId"])]
    # A `$connect` route deployed without the authorizer must not accept anyone (API Gateway answers 500).
    del event["requestContext"]["authorizer"]
    with pytest.raises(ValidationError):
        world.invoke("connect", event)


def test_management_endpoint_order(monkeypatch):
    domain, stage = "chat.example.com", "prod"
    for variable in lambda_routes.ENDPOINT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert lambda_routes.management_endpoint(domain, stage) == "https://chat.example.com/prod"
    with pytest.raises(ValueError, match="MANAGEMENT_API_ENDPOINT"):
        lambda_routes.management_endpoint(None, stage)
    execute_api = "https://abcdef1234.execute-api.eu-west-1.amazonaws.com/prod"
    monkeypatch.setenv("MANAGEMENT_API_ENDPOINT", execute_api)  # what the template sets
    assert lambda_routes.management_endpoint(domain, stage) == execute_api
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", "http://127.0.0.1:3001/local")  # parley dev
    assert lambda_routes.management_endpoint(domain, stage) == "http://127.0.0.1:3001/local"
