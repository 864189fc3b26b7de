"""Test support shared by the suites: the template as data, AWS-shaped events, and a recorder
for what each connection received through moto's `@connections` backend."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def create_tables_from_template(client: Any, template: dict[str, Any]) -> dict[str, str]:
    """Create every AWS::DynamoDB::Table of the template in moto; returns logical id -> table name."""
    names = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        name = f"test-{logical_id}"
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        client.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        names[logical_id] = name
    return names


def connection_id(n: int) -> str:
    return base64.b64encode(f"conn-{n:05d}".encode()[:11]).decode()[:15] + "="


def _context(connection: str, route_key: str, event_type: str, user: str | None, name: str | None) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    request_id = base64.b64encode(os.urandom(6)).decode() + "="
    ctx: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": "test",
        "connectedAt": now_ms - 1000,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "127.0.0.1"},
        "requestId": request_id,
        "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "connectionId": connection,
        "apiId": "abcdef1234",
    }
    if user is not None:
        ctx["authorizer"] = {"principalId": user, "name": name or user, "integrationLatency": 12}
    return ctx


def message_event(connection: str, user: str, body: str | dict | list, *, route_key: str | None = None, name: str | None = None) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    if route_key is None:
        route_key = body.get("type", "$default") if isinstance(body, dict) else "$default"
    ctx = _context(connection, route_key, "MESSAGE", user, name)
    ctx["messageId"] = base64.b64encode(os.urandom(6)).decode() + "="
    return {"requestContext": ctx, "body": text, "isBase64Encoded": False}


def connect_event(connection: str, user: str, name: str | None = None) -> dict[str, Any]:
    headers = {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com", "Sec-WebSocket-Version": "13"}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {"token": "eyJhbGciOiJIUzI1NiJ9.e30.redacted"},
        "requestContext": _context(connection, "$connect", "CONNECT", user, name),
        "isBase64Encoded": False,
    }


def disconnect_event(connection: str, user: str, code: int = 1001, reason: str = "Going away") -> dict[str, Any]:
    headers = {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    ctx = _context(connection, "$disconnect", "DISCONNECT", user, None)
    ctx["disconnectStatusCode"] = code
    ctx["disconnectReason"] = reason
    return {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()}, "requestContext": ctx, "isBase64Encoded": False}


def load_function(folder: str) -> Any:
    """Import functions/<folder>/app.py under a unique module name, as Lambda would load it."""
    path = ROOT / "functions" / folder / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{folder}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_frames(data: bytes) -> list[dict[str, Any]]:
    """moto appends every PostToConnection payload to one buffer; split it back into frames."""
    decoder = json.JSONDecoder()
    text = data.decode("utf-8")
    frames, index = [], 0
    while index < len(text):
        frame, index = decoder.raw_decode(text, index)
        frames.append(frame)
    return frames
