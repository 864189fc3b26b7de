"""RS256 against a JWKS endpoint (Cognito, Auth0 style), served on 127.0.0.1 by the test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import importlib
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from parley_testing.functions import LambdaContext, load_function

ISSUER = "https://issuer.example.com/"
AUDIENCE = "parley-web"


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys():
    return {"good": _rsa_key(), "other": _rsa_key()}


@pytest.fixture
def jwks_server(keys):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["good"].public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", hits
    server.shutdown()


@pytest.fixture
def authorize(jwks_server, monkeypatch):
    url, hits = jwks_server
    monkeypatch.setenv("AUTH_MODE", "RS256")
    monkeypatch.setenv("JWKS_URL", url)
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    import parley.aws.authorizer_route

    importlib.reload(parley.aws.authorizer_route)  # the verifier is built once per environment, from env
    function = load_function("authorizer")

    def call(token):
        event = {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:a/test/$connect",
                 "headers": {}, "queryStringParameters": {"token": token}}
        return function.lambda_handler(event, LambdaContext())

    yield call, hits
    monkeypatch.undo()
    importlib.reload(parley.aws.authorizer_route)


def rs_token(key, claims=None, kid="k1", algorithm="RS256"):
    body = {"sub": "alice", "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}
    body.update(claims or {})
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm, headers={"kid": kid})


def test_valid_rs256_token_is_allowed_and_keys_are_cached(authorize, keys):
    call, hits = authorize
    for _ in range(3):
        assert call(rs_token(keys["good"]))["principalId"] == "alice"
    assert len(hits) == 1  # one JWKS fetch for three connections


def test_hs_rs_algorithm_confusion_is_refused_before_any_key_lookup(authorize, keys):
    call, hits = authorize
    public_pem = keys["good"].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # The classic attack: sign HS256 with the public key as the HMAC secret.
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    payload = json.dumps({"sub": "mallory", "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}).encode()
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(payload)
    signature = b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    token = (signing_input + b"." + signature).decode()
    with pytest.raises(Exception, match="^Unauthorized$"):
        call(token)
    # Refused on its header: a token of another algorithm (here with a kid we do know) never makes
    # the authorizer fetch the JWKS, so such tokens cannot turn connections into calls to the provider.
    assert hits == []
    with pytest.raises(Exception, match="^Unauthorized$"):
        call(rs_token(keys["good"], kid="k-unknown", algorithm="RS384"))
    assert hits == []


@pytest.mark.parametrize(
    "case",
    ["wrong-key", "unknown-kid", "expired", "not-yet-valid", "wrong-iss", "wrong-aud", "no-sub", "alg-none"],
)
def test_bad_rs256_tokens_are_unauthorized(authorize, keys, case):
    call, _ = authorize
    token = {
        "wrong-key": lambda: rs_token(keys["other"]),
        "unknown-kid": lambda: rs_token(keys["good"], kid="k2"),
        "expired": lambda: rs_token(keys["good"], {"exp": int(time.time()) - 60}),
        "not-yet-valid": lambda: rs_token(keys["good"], {"nbf": int(time.time()) + 600}),
        "wrong-iss": lambda: rs_token(keys["good"], {"iss": "https://evil.example.com/"}),
        "wrong-aud": lambda: rs_token(keys["good"], {"aud": "someone-else"}),
        "no-sub": lambda: rs_token(keys["good"], {"sub": None}),
        "alg-none": lambda: jwt.encode({"sub": "alice", "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}, None, algorithm="none"),
    }[case]()
    with pytest.raises(Exception, match="^Unauthorized$"):
        call(token)
