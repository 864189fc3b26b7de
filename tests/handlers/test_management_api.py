"""The sender against a real HTTP endpoint that answers like `@connections`."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from parley.aws.management_api import ManagementApiSender  # noqa: E402
from parley.core.model import FanoutJob  # noqa: E402
from parley_testing.fake_connections_api import FakeConnectionsApi  # noqa: E402


@pytest.fixture
def api():
    server = FakeConnectionsApi().start()
    yield server
    server.stop()


def make_sender(api, **kwargs):
    kwargs.setdefault("backoff_base", 0.001)
    return ManagementApiSender(api.url, **kwargs)


def test_delivers_to_everyone_with_percent_encoded_ids(api):
    ids = tuple(f"id{n}+/=" for n in range(10))
    result = make_sender(api).send(FanoutJob(b'{"type":"x"}', ids))
    assert result.delivered == set(ids) and not result.gone and not result.failed
    assert all(api.received[i] == [b'{"type":"x"}'] for i in ids)


def test_gone_is_reported_not_retried(api):
    api.script["dead="] = [410, 410, 410]
    result = make_sender(api).send(FanoutJob(b"{}", ("dead=", "live=")))
    assert result.gone == {"dead="} and result.delivered == {"live="}
    assert api.script["dead="] == [410, 410]  # exactly one attempt


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_retried(api, status):
    api.script["flaky="] = [status, status]
    result = make_sender(api).send(FanoutJob(b"{}", ("flaky=",)))
    assert result.delivered == {"flaky="}
    assert api.received["flaky="] == [b"{}"]


def test_persistent_failure_is_reported_after_bounded_attempts(api):
    api.script["broken="] = [500] * 10
    result = make_sender(api, max_attempts=3).send(FanoutJob(b"{}", ("broken=", "fine=")))
    assert result.failed == {"broken=": "InternalServerError"}
    assert result.delivered == {"fine="}
    assert len(api.script["broken="]) == 7


def test_client_errors_are_not_retried(api):
    api.script["big="] = [413, 413]
    result = make_sender(api).send(FanoutJob(b"{}", ("big=",)))
    assert result.failed == {"big=": "PayloadTooLargeException"} and api.script["big="] == [413]


def test_a_hung_call_times_out_and_is_retried(api):
    api.script["slow="] = ["hang"]
    result = make_sender(api, read_timeout=0.3, connect_timeout=0.3).send(FanoutJob(b"{}", ("slow=",)))
    assert result.delivered == {"slow="}


def test_calls_in_flight_are_bounded():
    api = FakeConnectionsApi(latency_ms=20).start()
    try:
        ids = tuple(f"c{n}=" for n in range(120))
        result = ManagementApiSender(api.url, max_in_flight=8).send(FanoutJob(b"{}", ids))
        assert len(result.delivered) == 120
        assert 2 <= api.max_in_flight <= 8
    finally:
        api.stop()
