"""Handlers under test run exactly as Lambda runs them, against moto's DynamoDB and `@connections`.

The environment is set before any `parley` module is imported, because table names and
settings are read once per execution environment, as on Lambda.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import unquote

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "CONNECTIONS_TABLE": "test-ConnectionsTable",
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
from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend, apigatewaymanagementapi_backends  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402

from tests.support import (  # noqa: E402
    connect_event,
    connection_id,
    create_tables_from_template,
    disconnect_event,
    load_function,
    load_template,
    message_event,
    split_frames,
)

ROUTES = ["message", "join_room", "leave_room", "chat_message", "typing", "mark_read", "get_history", "ping"]
FUNCTIONS = {name: load_function(name) for name in ROUTES + ["default", "connect", "disconnect", "authorizer"]}


class GoneException(JsonRESTError):
    code = 410

    def __init__(self) -> None:
        super().__init__("GoneException", "")


class FakeContext:
    function_name = "test"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


@dataclass
class Client:
    world: "World"
    connection_id: str
    user_id: str
    name: str
    inbox: list[dict[str, Any]] = field(default_factory=list)

    def send(self, type_name: Any = None, data: Any = None, *, raw: str | None = None) -> dict[str, Any] | None:
        """Send one frame the way API Gateway would route it; returns the route response frame."""
        if raw is None:
            body: dict[str, Any] = {"type": type_name}
            if data is not None:
                body["data"] = data
            raw = json.dumps(body)
        return self.world.deliver(self, raw)

    def take(self) -> list[dict[str, Any]]:
        frames, self.inbox = self.inbox, []
        return frames

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.take()]


class World:
    """A fake API Gateway in front of the real handlers; moto plays DynamoDB and `@connections`."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.recording = False
        self.gone: set[str] = set()
        self.posts = 0
        self._counter = 0
        self.dynamodb = boto3.client("dynamodb")
        self.backend: ApiGatewayManagementApiBackend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
        self.operations: list[str] = []  # every AWS API call the handlers made, in order

    def connect(self, user: str, name: str | None = None) -> Client:
        self._counter += 1
        client = Client(self, connection_id(self._counter), user, name or user)
        result = self.invoke("connect", connect_event(client.connection_id, user, name))
        assert result["statusCode"] == 200
        self.clients[client.connection_id] = client
        return client

    def disconnect(self, client: Client) -> None:
        self.gone.add(client.connection_id)
        self.invoke("disconnect", disconnect_event(client.connection_id, client.user_id))
        self.collect()

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        self.recording = True
        try:
            return FUNCTIONS[function].lambda_handler(event, FakeContext())
        finally:
            self.recording = False

    def route_of(self, raw: str) -> str:
        try:
            frame = json.loads(raw)
        except ValueError:
            return "$default"
        if not isinstance(frame, dict) or "type" not in frame:
            return "$default"
        selected = frame["type"] if isinstance(frame["type"], str) else json.dumps(frame["type"])
        return selected if selected in ROUTES else "$default"

    def deliver(self, client: Client, raw: str) -> dict[str, Any] | None:
        route = self.route_of(raw)
        event = message_event(client.connection_id, client.user_id, raw, route_key=route, name=client.name)
        response = self.invoke("default" if route == "$default" else route, event)
        assert response["statusCode"] == 200
        self.collect()
        reply = json.loads(response["body"]) if response.get("body") else None
        if reply is not None:
            client.inbox.append(reply)
        return reply

    def collect(self) -> None:
        for cid, connection in list(self.backend.connections.items()):
            if connection.data:
                frames = split_frames(connection.data)
                connection.data = b""
                self.posts += len(frames)
                if cid in self.clients:
                    self.clients[cid].inbox.extend(frames)

    def items(self, table: str) -> list[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("scan")  # test inspection only, never in shipped code
        return [item for page in paginator.paginate(TableName=f"test-{table}") for item in page["Items"]]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        tables = ["ConnectionsTable", "MembershipsTable", "MessagesTable", "IdempotencyTable"]
        return {table: sorted(self.items(table), key=json.dumps) for table in tables}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import parley.lambda_adapter as adapter

    # A new world is a new deployment: no execution environment remembers anyone from the last one.
    adapter._over_limit.clear()
    with mock_aws():
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        instance = World()
        original = ApiGatewayManagementApiBackend.post_to_connection

        def post_to_connection(backend: ApiGatewayManagementApiBackend, data: bytes, connection_id: str) -> None:
            connection_id = unquote(connection_id)  # moto leaves boto3's %3D encoding in the id
            if connection_id in instance.gone or connection_id not in instance.clients:
                raise GoneException()
            original(backend, data, connection_id)

        monkeypatch.setattr(ApiGatewayManagementApiBackend, "post_to_connection", post_to_connection)
        make_api_call = BaseClient._make_api_call

        def recording_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            if instance.recording:
                instance.operations.append(f"{client.meta.service_model.service_name}:{operation}")
            return make_api_call(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording_call)
        yield instance
        assert not [op for op in instance.operations if op.endswith(":Scan")], "a handler issued a DynamoDB Scan"
