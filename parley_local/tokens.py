"""Dev tokens: HS256 JWTs the local stack's authorizer accepts.

Why here: `parley token` and `parley dev` must share one secret, the
environment variable `PARLEY_JWT_SECRET`, whose default is public and
therefore for local development only; `parley dev` writes it into the
embedded SSM where the template's authorizer reads it.
"""

from __future__ import annotations

import json
import os
import time

import jwt

DEV_SECRET_DEFAULT = "parley-dev-secret-not-for-production"  # dev only: it is public
DEFAULT_TTL_S = 24 * 3600


def dev_secret() -> str:
    return os.environ.get("PARLEY_JWT_SECRET") or DEV_SECRET_DEFAULT


def make_token(
    user: str,
    name: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    secret: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    rooms: str | None = None,
) -> str:
    """An HS256 JWT with `sub`, `name`, `iat`, `exp` (and `iss`/`aud`, and the `rooms` claim
    from its JSON text, when given). The authorizer is what validates `rooms`: a token with a
    malformed claim is minted, and refused at connect with 401, exactly as a real issuer's."""
    if not 1 <= len(user) <= 128:
        raise ValueError("the user id must be 1..128 characters")
    room_claim = None
    if rooms is not None:
        try:
            room_claim = json.loads(rooms)
        except ValueError:
            raise ValueError('--rooms must be JSON, e.g. \'{"case-*": ["read", "write"]}\'') from None
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "name": name or user, "iat": now, "exp": now + int(ttl_s)}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if room_claim is not None:
        claims["rooms"] = room_claim
    return jwt.encode(claims, secret or dev_secret(), algorithm="HS256")
