"""JWT verification and the authorizer's policy, kept apart from the Lambda event plumbing.

Only the configured algorithm is accepted, so `alg: none` and HS/RS confusion fail by construction:
PyJWT's `algorithms` list refuses any other `alg` before a signature is checked, and a key chosen per
token (RS256, by `kid`) is looked up only after its header named the configured algorithm. Each token
is parsed once per key choice: the authorizer runs before every connection, and PyJWT's parse
(a per-character scan of every segment) was a fifth of its CPU when done twice. Failures carry a
reason for the log, never for the client: API Gateway turns them into a bare 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jwt

from ..core.access import ClaimError, Grants

MAX_TOKEN_BYTES = 8192
MAX_USER_ID_LENGTH = 128


class TokenRejected(Exception):
    """The token does not prove an identity; the handshake must end in 401."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str
    rooms: Grants | None = None  # None: the token has no `rooms` claim (the RoomAccess mode decides)

    def context(self) -> dict[str, str]:
        """What API Gateway hands every route of the connection (string values only)."""
        values = {"name": self.name}
        if self.rooms is not None:
            values["rooms"] = self.rooms.encode()
        return values


class JwtVerifier:
    """Verifies a token with exactly one algorithm; `key_for(token)` gives the key to check it with
    (and refuses, with TokenRejected, a token it cannot choose a key for)."""

    def __init__(
        self, algorithm: str, key_for: Callable[[str], Any], *, issuer: str | None = None, audience: str | None = None
    ) -> None:
        self.algorithm = algorithm
        self._key_for = key_for
        self._issuer = issuer or None
        self._audience = audience or None

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise TokenRejected("no token")
        if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise TokenRejected("token larger than 8 KB")
        required = ["exp", "sub"] + (["iss"] if self._issuer else []) + (["aud"] if self._audience else [])
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=[self.algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": required},  # type: ignore[typeddict-item]
                leeway=5,
            )
        except jwt.PyJWTError as error:
            raise TokenRejected(f"{type(error).__name__}: {error}") from None
        return identity_from_claims(claims)


def hs256_verifier(
    secret: Callable[[], str],
    *,
    secret_max_age_s: float = 0.0,
    issuer: str | None = None,
    audience: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> JwtVerifier:
    """Tokens signed with a shared secret (held in SSM when deployed).

    `secret()` is asked again only once `secret_max_age_s` has passed since it last answered (0: for
    every token), so a rotated secret is in use within that time. Why not ask every time: Powertools'
    cached `get_parameter` still reads half a dozen environment variables and the clock per call,
    ~6.5 µs of the authorizer's ~60 µs per connection (benchmarks/handler_cpu_bench.py)."""
    held: tuple[str, float] | None = None  # the secret, and the clock reading from which it is asked again

    def key_for(token: str) -> str:
        nonlocal held
        now = clock()
        if held is None or now >= held[1]:
            held = (secret(), now + secret_max_age_s)
        return held[0]

    return JwtVerifier("HS256", key_for, issuer=issuer, audience=audience)


def rs256_verifier(jwks_url: str, *, issuer: str | None = None, audience: str | None = None) -> JwtVerifier:
    """Tokens from an identity provider (Cognito, Auth0) whose public keys are published as JWKS.

    Keys are cached for the life of the execution environment and fetched again only for an
    unknown `kid`, so a warm authorizer makes no network call per connection.
    """
    if not jwks_url:
        raise RuntimeError("JWKS_URL is not set: RS256 mode needs the identity provider's JWKS address")
    client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=3)

    def key_for(token: str) -> Any:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":  # before the key lookup: a foreign token never makes us fetch the JWKS
            raise TokenRejected(f"algorithm {header.get('alg')!r} is not the configured RS256")
        return client.get_signing_key(header.get("kid")).key

    return JwtVerifier("RS256", key_for, issuer=issuer, audience=audience)


def identity_from_claims(claims: dict) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_USER_ID_LENGTH:
        raise TokenRejected("sub must be a string of 1-128 characters")
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        name = sub
    rooms = None
    if "rooms" in claims:
        try:
            rooms = Grants.from_claim(claims["rooms"])
        except ClaimError as error:
            raise TokenRejected(f"rooms claim: {error}") from None
    return Identity(user_id=sub, name=name[:128], rooms=rooms)


def origin_allowed(origin: str | None, allow_list: str) -> bool:
    """A browser's Origin must be listed; a client without one (not a browser) is not restricted.

    An entry `scheme://host:*` allows that scheme and host on any port (local work: a page on
    whatever port its dev server picked); nothing else is a pattern.
    """
    allowed = [entry.strip().rstrip("/") for entry in allow_list.split(",") if entry.strip()]
    if not allowed or "*" in allowed or origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    base, _, port = origin.rpartition(":")
    return port.isdigit() and "//" in base and f"{base}:*" in allowed


def policy(principal_id: str, effect: str, resource: str, context: dict[str, str] | None = None) -> dict:
    document = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context:
        document["context"] = context
    return document
