"""Fixtures for the local gateway tests: gateways running in a background thread, over real sockets
(`parley_testing.gateway_thread.RunningGateway`), on the fixture templates."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
import websockets

from parley_local.gateway.connections_api import ConnectionsApi
from parley_local.local_aws.dynamodb_local import DynamoDBLocalError, find_release
from parley_testing.fixture_clients import request
from parley_testing.gateway_thread import MAIN_TEMPLATE, SMALL_TEMPLATE, RunningGateway


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
    warm_echo(g)
    yield g
    g.stop()


@pytest.fixture(scope="session")
def one_environment_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """At most one execution environment per function (a laptop's pool under a burst); integration timeout 1 s."""
    g = RunningGateway(
        SMALL_TEMPLATE, tmp_path_factory.mktemp("records-one-env"), integration_timeout=1.0, max_concurrency=1, prewarm=False,
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


@pytest.fixture
def http_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the HTTP requests the gateway's `@connections` route served."""
    seen: list[str] = []
    original = ConnectionsApi.handle

    async def counted(self: ConnectionsApi, req: Any) -> Any:
        seen.append(req.path)
        return await original(self, req)

    monkeypatch.setattr(ConnectionsApi, "handle", counted)
    return seen


@pytest.fixture(scope="module", params=["moto", "local"])
def stream_backend(request: pytest.FixtureRequest) -> str:
    """Both DynamoDB stream implementations: moto's (the tests' default) and DynamoDB Local's (`parley dev`'s
    default); DynamoDB Local is skipped where it is not installed, and fails the run on CI."""
    if request.param == "local":
        try:
            find_release()
        except DynamoDBLocalError as exc:
            if os.environ.get("CI"):
                pytest.fail(str(exc), pytrace=False)
            pytest.skip(str(exc))
    return str(request.param)


@pytest.fixture
def copy_stack(tmp_path: Path) -> Callable[..., Path]:
    """`copy_stack(template, folders=("functions", "layer"))`: a private copy of a stack (the template as
    template.yaml and the `folders` beside it: a fixture stack's functions and layer, or the project's
    `("functions", "layers")`), free to edit while a gateway serves it; returns the copied template's path."""
    def copy(template: Path, folders: Sequence[str] = ("functions", "layer")) -> Path:
        root = tmp_path / "stack"
        root.mkdir()
        shutil.copy(template, root / "template.yaml")
        for folder in folders:
            shutil.copytree(template.parent / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
        return root / "template.yaml"

    return copy


def warm_echo(g: RunningGateway) -> None:
    """One warm `echo` environment before the tests that time it: its cold start under a loaded machine
    can outlast the 1 s integration timeout, which would fail the first test for the wrong reason."""
    async def warm() -> bool:
        async with websockets.connect(g.ws_url, open_timeout=30) as ws:
            return (await request(ws, {"action": "echo"}, 15)).get("route") == "echo"

    for _ in range(5):  # the environment keeps starting after a timed-out call
        if asyncio.run(warm()):
            return
        time.sleep(1)
    raise AssertionError("the echo function never answered within the 1 s integration timeout")
