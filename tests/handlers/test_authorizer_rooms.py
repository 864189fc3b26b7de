"""The `rooms` claim at `$connect`: validated once by the authorizer, 401 when malformed, and
handed to every route compactly in the authorizer context."""

from __future__ import annotations

import pytest

from parley_testing.lambda_events import JWT_SECRET
from parley_testing.lambda_events import jwt_token as token


def test_a_valid_claim_reaches_the_context_compactly(authorize):
    claims = {"rooms": {"case-42-*": ["read", "write"], "lobby": ["read"], "*": ["moderate"]}}
    result = authorize(token(claims))
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert result["context"] == {"name": "Alice", "rooms": "*=m,case-42-*=rw,lobby=r"}


def test_no_claim_leaves_the_decision_to_room_access(authorize):
    assert "rooms" not in authorize(token())["context"]


def test_an_empty_claim_grants_nothing_and_says_so(authorize):
    assert authorize(token({"rooms": {}}))["context"]["rooms"] == "none"


MALFORMED = {
    "51 patterns": {f"r{n}": ["read"] for n in range(51)},
    "control character": {"lobby\u0007": ["read"]},
    "NUL": {"lob\u0000by": ["read"]},
    "star inside": {"a*b": ["read"]},
    "unknown action": {"lobby": ["admin"]},
    "actions not a list": {"lobby": "read"},
    "not an object": ["lobby"],
    "a string": "*",
    "null": None,
}


@pytest.mark.parametrize("claim", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_claim_refuses_the_connection_with_401(authorize, claim):
    body = token({"sub": "alice"})  # sanity: the same token without the claim is fine
    assert authorize(body)["principalId"] == "alice"
    claims = {"rooms": claim} if claim is not None else {"rooms": None}
    bad = token(claims) if claim is not None else _with_null_rooms()
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(bad)


def _with_null_rooms() -> str:
    import time

    import jwt

    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 300, "rooms": None}, JWT_SECRET, algorithm="HS256")


def test_a_claim_of_10000_patterns_is_refused(authorize):
    # It cannot even fit the 8 KB token limit; the 401 holds whichever check sees it first.
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(token({"rooms": {f"room-{n}": ["read"] for n in range(10_000)}}))
