"""Fault injection for the handler tests: DynamoDB throttling at the HTTP level, `@connections`
failures in moto's backend, a raw-frame sender that keeps the request id, and a log recorder.

Throttling is injected where a real throttle arrives: as an HTTP 400 response to the request
botocore sends (moto's `before-send` stub is wrapped), so botocore's retry handler (PynamoDB's
`max_retry_attempts`) sees it exactly as it would see DynamoDB's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote

import pytest
import urllib3
from botocore.awsrequest import AWSResponse
from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.core.exceptions import JsonRESTError

from tests.support import message_event

THROTTLE_TYPES = {
    "ProvisionedThroughputExceededException": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "ThrottlingException": "com.amazon.coral.availability#ThrottlingException",
}


# ---- DynamoDB ------------------------------------------------------------------------------


@dataclass
class DynamoThrottle:
    """Answer the next `times` matching DynamoDB requests (every one if `times` is None) with a throttle."""

    monkeypatch: pytest.MonkeyPatch
    rules: list[dict[str, Any]] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        original = BotocoreStubber.__call__
        throttle = self

        def stub(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
            if stubber.enabled:
                response = throttle._maybe_throttle(request)
                if response is not None:
                    return response
            return original(stubber, event_name, request, **kwargs)

        self.monkeypatch.setattr(BotocoreStubber, "__call__", stub)

    def add(self, operation: str, table: str, *, times: int | None, code: str = "ProvisionedThroughputExceededException") -> None:
        self.rules.append({"operation": operation, "table": f"test-{table}", "left": times, "code": code})

    def clear(self) -> None:
        self.rules.clear()

    def _maybe_throttle(self, request: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if not target.startswith("DynamoDB_"):
            return None
        operation = target.split(".", 1)[1]
        body = json.loads(request.body or b"{}")
        tables = {body["TableName"]} if "TableName" in body else set(body.get("RequestItems", {}))
        with self._lock:
            for rule in self.rules:
                if rule["operation"] != operation or rule["table"] not in tables:
                    continue
                if rule["left"] is not None:
                    if rule["left"] <= 0:
                        continue
                    rule["left"] -= 1
                self.injected[(operation, rule["table"][5:])] += 1
                payload = json.dumps({"__type": THROTTLE_TYPES[rule["code"]], "message": "Rate of requests exceeds the allowed throughput."})
                headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "THROTTLED0000000000000000000000000000000000000000"}
                return AWSResponse(request.url, 400, headers, MockRawResponse(payload))
        return None


@pytest.fixture
def throttle(world, monkeypatch: pytest.MonkeyPatch) -> DynamoThrottle:
    import botocore.retries.standard as standard

    delays: list[float] = []

    def no_wait(backoff: Any, context: Any) -> float:
        delays.append(context.attempt_number)
        return 0.0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", no_wait)  # retried, just not slept
    instance = DynamoThrottle(monkeypatch)
    instance.retry_delays = delays  # type: ignore[attr-defined]
    return instance


# ---- @connections --------------------------------------------------------------------------


class LimitExceededException(JsonRESTError):
    code = 429

    def __init__(self) -> None:
        super().__init__("LimitExceededException", "Rate exceeded")


class InternalServerErrorException(JsonRESTError):
    code = 500

    def __init__(self) -> None:
        super().__init__("InternalServerErrorException", "Internal server error")


FAILURES: dict[str, Callable[[], BaseException]] = {
    "429": LimitExceededException,
    "500": InternalServerErrorException,
    "timeout": lambda: urllib3.exceptions.ReadTimeoutError(None, "/@connections", "Read timed out. (read timeout=5.0)"),
}


@dataclass
class ConnectionFaults:
    """`@connections` failing for chosen recipients: `plan[connection_id] = (kind, times)` (times None: always).

    Only payloads for which `matches(payload)` holds are failed; every call is counted in `attempts`.
    """

    monkeypatch: pytest.MonkeyPatch
    plan: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    attempts: Counter = field(default_factory=Counter)
    matches: Callable[[bytes], bool] = lambda payload: b'"type":"message_received"' in payload
    sleeps: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        current = ApiGatewayManagementApiBackend.post_to_connection  # conftest's (410 for world.gone)
        faults = self

        def post_to_connection(backend: ApiGatewayManagementApiBackend, data: bytes, connection_id: str) -> None:
            cid = unquote(connection_id)
            if faults.matches(data):
                with faults._lock:
                    faults.attempts[cid] += 1
                    kind, left = faults.plan.get(cid, (None, 0))
                    fail = kind is not None and (left is None or left > 0)
                    if fail and left is not None:
                        faults.plan[cid] = (kind, left - 1)
                if fail:
                    raise FAILURES[kind]()
            current(backend, data, connection_id)

        self.monkeypatch.setattr(ApiGatewayManagementApiBackend, "post_to_connection", post_to_connection)

    def fail(self, connection_id: str, kind: str, times: int | None) -> None:
        self.plan[connection_id] = (kind, times)


def the_sender() -> Any:
    """The process's cached ManagementApiSender for the test events' endpoint."""
    from parley import lambda_adapter
    from parley.sender import sender_for

    endpoint = lambda_adapter._management_endpoint("abcdef1234.execute-api.us-east-1.amazonaws.com", "test")
    return sender_for(endpoint, lambda_adapter.settings.fanout_max_in_flight)


@pytest.fixture
def connection_faults(world, monkeypatch: pytest.MonkeyPatch) -> ConnectionFaults:
    faults = ConnectionFaults(monkeypatch)
    monkeypatch.setattr(the_sender(), "_sleep", faults.sleeps.append)  # backoff recorded, not slept
    return faults


# ---- sending raw frames, with the request id ----------------------------------------------


@dataclass
class Delivery:
    request_id: str
    route: str
    body: str | None  # the route response body exactly as the handler returned it
    reply: dict[str, Any] | None


def send_raw(world: Any, client: Any, raw: str, *, unparsable_route: str = "$default") -> Delivery:
    """`client.send(raw=...)`, but also for frames the harness cannot route (nesting deeper than
    Python's JSON parser goes: sent to `unparsable_route`, the route API Gateway's own parser
    may well have picked), and returning the request id and the raw response body."""
    try:
        route = world.route_of(raw)
    except RecursionError:
        route = unparsable_route
    event = message_event(client.connection_id, client.user_id, raw, route_key=route, name=client.name)
    response = world.invoke("default" if route == "$default" else route, event)
    assert response["statusCode"] == 200, response
    world.collect()
    body = response.get("body")
    reply = json.loads(body) if body else None
    if reply is not None:
        client.inbox.append(reply)
    return Delivery(event["requestContext"]["requestId"], route, body, reply)


def send(world: Any, client: Any, type_name: str, data: Any) -> Delivery:
    return send_raw(world, client, json.dumps({"type": type_name, "data": data}))


# ---- logs ---------------------------------------------------------------------------------


class LogRecorder(logging.Handler):
    """Every Powertools log line the handlers emit, formatted as Lambda would print it (JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def for_request(self, request_id: str, *, min_level: str = "WARNING") -> list[dict[str, Any]]:
        floor = logging.getLevelName(min_level)
        return [
            line for line in self.lines
            if line.get("correlation_id") == request_id and logging.getLevelName(line.get("level", "DEBUG")) >= floor
        ]


@pytest.fixture
def logs() -> Any:
    from parley.observability import logger

    recorder = LogRecorder()
    recorder.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger._logger.removeHandler(recorder)
