"""The local gateway running in a background thread of the test process, reached only over sockets.

Why a thread with its own event loop: tests (with their own pytest-asyncio loop) then talk to
the gateway like any client, while still being able to look at its console and its local AWS.
The fixture templates' handlers record every event they get under `RecordDir`; `records()`
reads them back (bounded waits only).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, ClassVar

import boto3
from botocore.config import Config

from parley_local.gateway.console import Console
from parley_local.gateway.event_loop import new_event_loop
from parley_local.gateway.server import Gateway, GatewayConfig
from parley_local.gateway.template import load_stack
from parley_local.parley_extras import ParleyExtras

from .template import ROOT
from .waiting import wait_for

FIXTURES = ROOT / "tests" / "gateway" / "fixtures"
MAIN_TEMPLATE = FIXTURES / "template.yaml"  # authorizer, `$default`, route responses, tables, SSM
SMALL_TEMPLATE = FIXTURES / "template_small.yaml"  # no authorizer, no `$connect`, no `$default`


class ListConsole(Console):
    """Keeps every console line (thread-safe appends) so tests can assert on the gateway's output."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def log_lines(self, prefix: str, text: str) -> None:
        self.lines.extend(prefix + line for line in text.split("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


class RunningGateway:
    """`Gateway` + `ParleyExtras` on a free port, DynamoDB from moto unless `dynamodb="local"`; `config` is `GatewayConfig` fields plus
    `overrides` (template parameters) and `stack_name`. `client_dir` defaults to the template's
    folder's `client/`, as `parley dev` does.

    A gateway's loop that dies (an exception out of the loop itself, not out of a callback) is reported
    by `deaths()`, which tests/conftest.py asks after every test: the test it died in fails, naming the
    exception, instead of every later test timing out in its handshake."""

    running: ClassVar[weakref.WeakSet[RunningGateway]] = weakref.WeakSet()

    def __init__(self, template: Path, record_dir: Path, client_dir: Path | None = None, **config: Any):
        self.record_dir = record_dir
        overrides = {"RecordDir": str(record_dir), **config.pop("overrides", {})}
        self.stack = load_stack(template, config.pop("stack_name", "fx"), overrides)
        self.console = ListConsole()
        config.setdefault("dynamodb", "moto")  # the emulator's own tests need no Java; tests/dynamodb_local covers it
        cfg = GatewayConfig(host="127.0.0.1", port=0, **config)
        extras = ParleyExtras(client_dir or template.resolve().parent / "client")
        self.gateway = Gateway(self.stack, cfg, self.console, extras=extras)
        self.loop = new_event_loop()  # the loop `parley dev` runs on
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.died: BaseException | None = None
        self._death_reported = False

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        except BaseException as exc:  # noqa: BLE001 - kept for deaths(): the thread's end is not the place to report it
            self.died = exc

    def start(self) -> "RunningGateway":
        self.thread.start()
        RunningGateway.running.add(self)
        asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result(60)
        return self

    def stop(self) -> None:
        """Stop the gateway (its sockets, environments and local AWS) on its loop; on a loop that died, here.

        A dead loop's gateway stays in `running` until `deaths()` has reported it, so that a gateway a test
        stops itself still fails that test."""
        if self.thread.is_alive():
            stopping = asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop)
            deadline = time.monotonic() + 30
            while self.thread.is_alive():
                try:
                    stopping.result(0.1)
                    break
                except concurrent.futures.TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if self.died is not None and not self.loop.is_closed():  # no thread runs the loop: this one may
            try:
                self.loop.run_until_complete(asyncio.wait_for(self.gateway.stop(), 30))
            except Exception as exc:  # noqa: BLE001 - the death is what deaths() reports; this is clean-up
                self.console.line(f"stopping after the loop died: {exc!r}")
            finally:
                self.loop.close()
        if self.died is None or self._death_reported:
            RunningGateway.running.discard(self)

    @classmethod
    def deaths(cls) -> list[str]:
        """Gateways whose loop has died since the last call, each as "url: exception" (each reported once)."""
        found = []
        for gateway in list(cls.running):
            if gateway.died is not None and not gateway._death_reported:
                gateway._death_reported = True
                found.append(f"{gateway.ws_url}: {gateway.died!r}")
                if gateway.loop.is_closed():  # stopped already
                    cls.running.discard(gateway)
        return found

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
