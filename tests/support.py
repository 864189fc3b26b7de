"""Transition shim: the shared test support now lives in the `parley_testing` package.

Kept only so that suites not yet moved (tests/handlers) keep importing; import from
`parley_testing` in new code. Delete this file once nothing imports `tests.support`.
"""

from parley_testing.functions import load_function, split_frames
from parley_testing.lambda_events import connect_event, connection_id, disconnect_event, message_event
from parley_testing.template import ROOT, TEMPLATE, create_tables_from_template, load_template

__all__ = [
    "ROOT", "TEMPLATE", "connect_event", "connection_id", "create_tables_from_template", "disconnect_event",
    "load_function", "load_template", "message_event", "split_frames",
]
