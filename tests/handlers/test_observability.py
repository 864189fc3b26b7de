"""Log redaction (`parley.aws.observability.redact`): bearer material never reaches a log line."""

from __future__ import annotations

import json

import pytest

from parley.aws.observability import REDACTED, _serialize, redact
from parley_testing.lambda_events import jwt_token


@pytest.mark.parametrize("param", ["token", "TOKEN", "Token", "toKen", "to\u212aen"])  # U+212A (Kelvin) is k to re.I and to lower()
def test_a_token_query_value_is_redacted_in_any_case(param):
    line = f'{{"url":"wss://h/test?room=a&{param}=s3cr3t-value&x=1"}}'
    assert "s3cr3t-value" not in redact(line)
    assert f"{param}={REDACTED}&x=1" in redact(line)


def test_a_jwt_anywhere_is_redacted():
    token = jwt_token()
    assert redact(f"Authorization: Bearer {token} end") == f"Authorization: Bearer {REDACTED} end"


def test_a_line_without_bearer_material_is_unchanged():
    line = _serialize({"message": "disconnected", "connection_id": "Y29ubi0wMDAwMQ==", "reason": "a=b&c=d"})
    assert redact(line) == line and json.loads(line)["connection_id"] == "Y29ubi0wMDAwMQ=="


def test_the_log_serializer_redacts():
    out = _serialize({"message": "refused", "query": "token=abc.def", "extra": jwt_token()})
    assert "abc.def" not in out and jwt_token().split(".")[2] not in out and out.count(REDACTED) == 2
