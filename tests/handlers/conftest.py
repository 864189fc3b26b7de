"""Handlers under test run exactly as Lambda runs them, against moto's DynamoDB and a real HTTP `@connections`.

The environment is set before any `parley` module is imported, because table names and
settings are read once per execution environment, as on Lambda.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Iterator

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MEMBERSHIPS_TABLE": "test-MembershipsTable",
        "MESSAGES_TABLE": "test-MessagesTable",
        "IDEMPOTENCY_TABLE": "test-IdempotencyTable",
        "JWT_SECRET_PARAMETER": "/parley/test/jwt-secret",
        "POWERTOOLS_SERVICE_NAME": "parley",
        "POWERTOOLS_METRICS_NAMESPACE": "ParleyTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)

import boto3  # noqa: E402
from botocore.client import BaseClient  # noqa: E402
from moto import mock_aws  # noqa: E402

from parley_testing.chat_world import ROUTES, ChatWorld, Client  # noqa: E402
from parley_testing.memory_store import TABLES  # noqa: E402
from parley_testing.fake_connections_api import FakeConnectionsApi  # noqa: E402
from parley_testing.lambda_events import (  # noqa: E402
    AUTHORIZER_METHOD_ARN, JWT_SECRET, connect_event, connection_id, disconnect_event, message_event,
)
from parley_testing.template import create_tables_from_template, load_template  # noqa: E402
from parley_testing.functions import LambdaContext, load_function  # noqa: E402
from parley_testing.handler_faults import ConnectionFaults, DynamoThrottle, LogRecorder, the_sender  # noqa: E402

FUNCTIONS = {name: load_function(name) for name in ROUTES + ["default", "connect", "disconnect", "authorizer", "presence", "fanout"]}
FRESH_WINDOW_MS = 15_000  # a rate test near a window's end waits for the next (at most a tenth of the window)


class World(ChatWorld):
    """A fake API Gateway in front of the real handlers: moto plays DynamoDB, and a real HTTP
    stand-in plays `@connections` (the handlers reach it through the standard endpoint variable)."""

    def __init__(self, connections_api: FakeConnectionsApi, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__()
        self._monkeypatch = monkeypatch
        self.recording = False
        self.dynamodb = boto3.client("dynamodb")
        self.connections_api = connections_api
        self.operations: list[str] = []  # every AWS API call the handlers made through botocore, in order
        self.requests: list[tuple[str, dict[str, Any]]] = []  # the same calls with their parameters

    def _new_connection_id(self, n: int) -> str:
        return connection_id(n)

    @property
    def closed(self) -> list[str]:
        """Connections the handlers closed with DeleteConnection."""
        return self.connections_api.deleted

    def _connect(self, client: Client) -> None:
        result = self.invoke("connect", connect_event(client.connection_id, client.user_id, client.name))
        assert result["statusCode"] == 200

    def _disconnect(self, client: Client) -> None:
        self.invoke("disconnect", disconnect_event(client.connection_id, client.user_id))

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        self.recording = True
        try:
            return FUNCTIONS[function].lambda_handler(event, LambdaContext())
        finally:
            self.recording = False

    def event_for(self, client: Client, route: str, raw: str) -> dict[str, Any]:
        return message_event(client.connection_id, client.user_id, raw, route_key=route, name=client.name, rooms=client.rooms)

    def _frame(self, client: Client, route: str, raw: str, request_id: str) -> str | None:
        event = self.event_for(client, route, raw)
        event["requestContext"]["requestId"] = request_id
        response = self.invoke("default" if route == "$default" else route, event)
        assert response["statusCode"] == 200, response
        return response.get("body")

    def _drain_posts(self) -> dict[str, list[bytes]]:
        return self.connections_api.drain()

    def use_room_access(self, mode: Any) -> None:
        import parley.aws.lambda_routes as routes

        self._monkeypatch.setattr(routes, "settings", dataclasses.replace(routes.settings, room_access=mode))

    def use_limits(self, *, chat: int, signals: int, window_seconds: int, chat_batch: int = 1, signals_batch: int = 1,
                   joins: int = 100, joins_batch: int = 1) -> None:
        import parley.aws.lambda_routes as routes

        self._monkeypatch.setattr(routes, "settings", dataclasses.replace(
            routes.settings, chat_rate_limit=chat, signal_rate_limit=signals, rate_window_seconds=window_seconds,
            chat_rate_batch=chat_batch, signal_rate_batch=signals_batch, join_rate_limit=joins, join_rate_batch=joins_batch))
        # The counters' windows are fixed and epoch-aligned, and these handlers read the real clock: a test
        # that straddles a window's end finds its allowance whole again halfway (a CI run sent 50 frames
        # where the flood test allows 35). Near a window's end, start in the next one.
        window_ms = window_seconds * 1000
        left_ms = window_ms - self.now_ms() % window_ms
        if left_ms < min(FRESH_WINDOW_MS, window_ms // 10):
            time.sleep(left_ms / 1000 + 0.01)

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every table read straight from moto's memory: the items a Scan returns, without the four
        Scans through botocore (which would be most of a property test's run time)."""
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends["123456789012"]["us-east-1"]
        return {
            table: sorted((item.to_json()["Attributes"] for item in backend.get_table(f"test-{table}").all_items()), key=json.dumps)
            for table in TABLES
        }

    def items(self, table: str) -> list[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("scan")  # test inspection only, never in shipped code
        return [item for page in paginator.paginate(TableName=f"test-{table}") for item in page["Items"]]


@pytest.fixture(scope="session")
def connections_api() -> Iterator[FakeConnectionsApi]:
    api = FakeConnectionsApi().start()
    yield api
    api.stop()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, connections_api: FakeConnectionsApi) -> Iterator[World]:
    import parley.aws.lambda_routes as routes

    # A new world is a new deployment: no execution environment remembers anyone from the last one.
    routes._over_limit.clear()
    routes._ledger.clear()
    connections_api.drain()
    connections_api.script.clear()
    connections_api.attempts.clear()
    connections_api.deleted.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", connections_api.url)
    with mock_aws():
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        instance = World(connections_api, monkeypatch)
        connections_api.is_gone = instance.is_gone
        make_api_call = BaseClient._make_api_call

        def recording_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            if instance.recording:
                instance.operations.append(f"{client.meta.service_model.service_name}:{operation}")
                instance.requests.append((operation, params))
            return make_api_call(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording_call)
        yield instance
        connections_api.is_gone = lambda connection_id: False
        assert not [op for op in instance.operations if op.endswith(":Scan")], "a handler issued a DynamoDB Scan"


# ---- faults (parley_testing.handler_faults) -------------------------------------------------


@pytest.fixture
def throttle(world: World, monkeypatch: pytest.MonkeyPatch) -> DynamoThrottle:
    import botocore.retries.standard as standard

    instance = DynamoThrottle(monkeypatch)

    def no_wait(backoff: Any, context: Any) -> float:
        instance.retry_delays.append(context.attempt_number)
        return 0.0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", no_wait)  # retried, just not slept
    return instance


@pytest.fixture
def connection_faults(world: World, monkeypatch: pytest.MonkeyPatch) -> ConnectionFaults:
    import urllib3

    from parley.aws.signed_http import SignedOrigin

    faults = ConnectionFaults(world.connections_api)
    sender = the_sender()
    monkeypatch.setattr(sender, "_sleep", faults.sleeps.append)  # backoff recorded, not slept
    # A hung call must time out well before the stand-in's 1.5 s hang ends.
    short = SignedOrigin(sender.endpoint_url, sender._api.signer, maxsize=sender.max_in_flight,
                         timeout=urllib3.Timeout(connect=0.5, read=0.3))
    monkeypatch.setattr(sender, "_api", short)
    return faults


@pytest.fixture
def logs() -> Iterator[LogRecorder]:
    from parley.aws.observability import logger

    recorder = LogRecorder()
    recorder.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger._logger.removeHandler(recorder)


# ---- the authorizer ---------------------------------------------------------------------------


@pytest.fixture
def authorize(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`authorize(token, origin=None)`: the real authorizer function, its secret in moto's SSM and
    `https://chat.example.com` its one allowed origin."""
    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/parley/test/jwt-secret", Value=JWT_SECRET, Type="SecureString")
        monkeypatch.setenv("ALLOWED_ORIGINS", "https://chat.example.com")
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        authorizer = load_function("authorizer")

        def call(token, origin=None):
            headers = {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com"}
            if origin:
                headers["Origin"] = origin
            event = {
                "type": "REQUEST",
                "methodArn": AUTHORIZER_METHOD_ARN,
                "headers": headers,
                "queryStringParameters": {} if token is None else {"token": token},
            }
            return authorizer.lambda_handler(event, LambdaContext())

        yield call
