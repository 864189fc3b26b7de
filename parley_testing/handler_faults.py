"""Fault injection for the handler tests (tests/handlers), used through fixtures in their conftest:
DynamoDB throttling at the HTTP level, `@connections` failures scripted in the HTTP stand-in, a
frame sender that keeps the request id, and a log recorder.

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
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

from .chat_world import ChatWorld, Client, Delivery

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
    retry_delays: list[int] = field(default_factory=list)  # the attempt number of each retry botocore made
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


# ---- @connections --------------------------------------------------------------------------


STATUSES: dict[str, int | str] = {"429": 429, "500": 500, "timeout": "hang"}
ALWAYS = 10_000  # a failure that does not end within any test


@dataclass
class ConnectionFaults:
    """`@connections` failing for chosen recipients: `fail(connection_id, kind, times)` (times None: always).

    The stand-in answers each of the recipient's next `times` posts with the failure; `attempts`
    counts the posts each connection got since the first `fail`.
    """

    api: Any
    sleeps: list[float] = field(default_factory=list)
    _baseline: Counter | None = None

    def fail(self, connection_id: str, kind: str, times: int | None) -> None:
        if self._baseline is None:
            self._baseline = Counter(self.api.attempts)
        self.api.script[connection_id] = [STATUSES[kind]] * (ALWAYS if times is None else times)

    def heal(self) -> None:
        self.api.script.clear()

    @property
    def attempts(self) -> Counter:
        return Counter(self.api.attempts) - (self._baseline or Counter())


def the_sender() -> Any:
    """The process's cached ManagementApiSender for the test events' endpoint."""
    from parley.aws import lambda_routes
    from parley.aws.management_api import sender_for

    endpoint = lambda_routes.management_endpoint("abcdef1234.execute-api.us-east-1.amazonaws.com", "test")
    return sender_for(endpoint, lambda_routes.settings.fanout_max_in_flight)


# ---- sending frames, with the request id ----------------------------------------------


def send(world: ChatWorld, client: Client, type_name: str, data: Any) -> Delivery:
    """`client.send(...)`, returning the request id and the raw route response body too."""
    return world.deliver(client, json.dumps({"type": type_name, "data": data}))


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
