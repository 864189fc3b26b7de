"""Fixtures for the local gateway tests: gateways running in a background thread, over real sockets.

Each `RunningGateway` owns an event loop in its own thread, so tests (with
their own pytest-asyncio loop) talk to it only through sockets, like any
client. Fixture handlers record every event they get under a per-gateway
RECORD_DIR; `records()` reads them back (bounded waits only).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config

from parley_local import parley_dev
from parley_local.console import Console
from parley_local.server import Gateway, GatewayConfig
from parley_local.template import load_stack

FIXTURES = Path(__file__).parent / "fixtures"
MAIN_TEMPLATE = FIXTURES / "template.yaml"
SMALL_TEMPLATE = FIXTURES / "template_small.yaml"


class ListConsole(Console):
    """Keeps every console line (thread-safe appends) so tests can assert on the gateway's output."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines)


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RunningGateway:
    def __init__(self, template: Path, record_dir: Path, client_dir: Path | None = None, **config: Any):
        self.record_dir = record_dir
        overrides = {"RecordDir": str(record_dir), **config.pop("overrides", {})}
        self.stack = load_stack(template, config.pop("stack_name", "fx"), overrides)
        self.console = ListConsole()
        cfg = GatewayConfig(host="127.0.0.1", port=0, **config)
        self.gateway = Gateway(
            self.stack, cfg, self.console,
            extra_routes=parley_dev.client_routes(lambda: self.gateway, client_dir or FIXTURES / "client"),
            before_serving=[parley_dev.seed_jwt_secret],
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "RunningGateway":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(60)
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function on the gateway's loop thread (to inspect state safely)."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    @property
    def ws_url(self) -> str:
        return self.gateway.ws_url

    @property
    def http_url(self) -> str:
        return self.gateway.http_url

    def management(self, with_stage: bool = True, **config: Any) -> Any:
        """A real boto3 `apigatewaymanagementapi` client pointed at the gateway."""
        endpoint = self.gateway.connections_url if with_stage else self.gateway.http_url
        return boto3.client(
            "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=10, **config),
        )

    def records(self, connection_id: str | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        paths = [p for p in self.record_dir.glob("*.json") if not p.name.startswith(".")]
        for path in sorted(paths, key=lambda p: int(p.name.split(".")[2])):
            cid, etype = path.name.split(".")[:2]
            if connection_id and cid != connection_id:
                continue
            if event_type and etype != event_type:
                continue
            out.append(json.loads(path.read_text()))
        return out

    def wait_record(self, connection_id: str | None, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        return wait_for(lambda: (self.records(connection_id, event_type) or [None])[-1], timeout, what=f"{event_type} event for {connection_id}")


@pytest.fixture(scope="session")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The fixture template with authorizer, `$default`, route responses; AWS default timeouts."""
    g = RunningGateway(MAIN_TEMPLATE, tmp_path_factory.mktemp("records-main"), overrides={"SharedValue": "from-override"}).start()
    yield g
    g.stop()


@pytest.fixture(scope="session")
def small_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """No authorizer, no `$connect`, no `$default`; idle 1 s, max 2.5 s, integration timeout 1 s."""
    g = RunningGateway(
        SMALL_TEMPLATE, tmp_path_factory.mktemp("records-small"),
        idle_timeout=1.0, max_connection_duration=2.5, integration_timeout=1.0, prewarm=False,
    ).start()
    yield g
    g.stop()


@pytest.fixture(scope="session")
def latency_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """`--post-latency-ms 300` with a queue of 3: the fourth concurrent @connections call gets 429."""
    g = RunningGateway(
        SMALL_TEMPLATE, tmp_path_factory.mktemp("records-latency"),
        post_latency_ms=300, post_queue_limit=3, prewarm=False,
    ).start()
    yield g
    g.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
