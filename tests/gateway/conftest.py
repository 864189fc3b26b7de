"""Fixtures for the local gateway tests: gateways running in a background thread, over real sockets
(`parley_testing.gateway_thread.RunningGateway`), on the fixture templates."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from parley_local.gateway.connections_api import ConnectionsApi
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
