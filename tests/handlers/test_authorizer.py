"""The `$connect` authorizer: only a valid HS256 token from the SSM secret gets in."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from parley_testing.lambda_events import AUTHORIZER_METHOD_ARN as METHOD_ARN
from parley_testing.lambda_events import jwt_token as token


def test_valid_token_allows_with_identity(authorize):
    result = authorize(token())
    assert result["principalId"] == "alice"
    assert result["context"] == {"name": "Alice"}
    (statement,) = result["policyDocument"]["Statement"]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}


def test_name_defaults_to_sub(authorize):
    assert authorize(token({"name": None}))["context"] == {"name": "alice"}


from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _unsigned(claims):
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "not-a-jwt",
        "a.b.c",
        token(key="wrong-secret-wrong-secret-wrong-secret"),
        token({"exp": int(time.time()) - 60}),
        token({"nbf": int(time.time()) + 600}),
        token({"exp": None}),
        token({"sub": None}),
        token({"sub": ""}),
        token({"sub": "x" * 129}),
        token({"pad": "x" * 9000}),
        _unsigned({"sub": "alice", "exp": int(time.time()) + 300}),
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, _RSA_KEY, algorithm="RS256"),
    ],
    ids=["missing", "empty", "garbage", "three-parts", "bad-signature", "expired", "not-yet-valid", "no-exp", "no-sub", "empty-sub", "long-sub", "over-8KB", "alg-none", "rs256-in-hs256-mode"],
)
def test_bad_tokens_are_unauthorized(authorize, bad):
    with pytest.raises(Exception, match="^Unauthorized$"):
        authorize(bad)


def test_foreign_origin_is_denied(authorize):
    result = authorize(token(), origin="https://evil.example.net")
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert "context" not in result


def test_listed_origin_and_no_origin_are_allowed(authorize):
    assert authorize(token(), origin="https://chat.example.com")["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert authorize(token())["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_token_never_reaches_the_logs(authorize, capsys):
    secret_token = token()
    with pytest.raises(Exception):
        authorize(secret_token + "tampered")
    authorize(secret_token)
    out = capsys.readouterr()
    assert secret_token.split(".")[2] not in out.out + out.err
    assert secret_token not in out.out + out.err


def test_the_hs256_secret_is_asked_for_once_per_max_age_and_a_rotated_one_is_used_after_it():
    """The authorizer runs before every connection: it asks Parameters for the secret once per
    `secret_max_age_s` (each ask costs ~6.5 µs even from Powertools' cache), not once per token, and a
    rotated secret takes over once that time has passed."""
    from parley.aws.jwt_verification import TokenRejected, hs256_verifier

    old, new = "old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789"
    stored, asked, clock = [old], [], [1000.0]

    def secret() -> str:
        asked.append(clock[0])
        return stored[0]

    verifier = hs256_verifier(secret, secret_max_age_s=300, clock=lambda: clock[0])
    for _ in range(5):
        assert verifier.verify(token(key=old)).user_id == "alice"
    assert asked == [1000.0]
    stored[0] = new  # rotated in SSM: the held secret is still the old one until its time is up
    clock[0] = 1299.0
    with pytest.raises(TokenRejected):
        verifier.verify(token(key=new))
    clock[0] = 1300.0
    assert verifier.verify(token(key=new)).user_id == "alice"
    assert asked == [1000.0, 1300.0]
    with pytest.raises(TokenRejected):
        verifier.verify(token(key=old))


def test_an_hs256_verifier_without_a_max_age_asks_for_the_secret_for_every_token():
    from parley.aws.jwt_verification import hs256_verifier

    asked = []
    verifier = hs256_verifier(lambda: asked.append(1) or "s3cret-for-tests-only-0123456789abcdef", clock=lambda: 5.0)
    for _ in range(3):
        verifier.verify(token())
    assert len(asked) == 3
