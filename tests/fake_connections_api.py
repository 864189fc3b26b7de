"""Transition shim: the fake `@connections` server is `parley_testing.fake_connections_api`.

Kept only so that tests/domain keeps importing until it imports `parley_testing` directly;
delete this file then.
"""

from parley_testing.fake_connections_api import FakeConnectionsApi

__all__ = ["FakeConnectionsApi"]
