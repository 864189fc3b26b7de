"""The `$connect` REQUEST authorizer's Lambda glue.

Kept out of `lambda_routes` so the authorizer's cold start imports neither the store nor the
sender: it runs before every connection and should be the cheapest function of all.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities import parameters

from .jwt_verification import JwtVerifier, TokenRejected, hs256_verifier, origin_allowed, policy, rs256_verifier
from .observability import Handler, logger

# How long a rotated JWT secret may go unnoticed: Powertools' cache of the parameter, and the verifier's hold on it.
SECRET_MAX_AGE_S = 300


def _jwt_secret() -> str:
    name = os.environ.get("JWT_SECRET_PARAMETER", "")
    if not name:
        raise RuntimeError("JWT_SECRET_PARAMETER is not set: the template must name the SSM parameter holding the secret")
    return parameters.get_parameter(name, decrypt=True, max_age=SECRET_MAX_AGE_S)  # type: ignore[return-value]


def _verifier_from_env() -> JwtVerifier:
    """AUTH_MODE picks the key source: HS256 (secret in SSM, the default) or RS256 (JWKS_URL)."""
    mode = os.environ.get("AUTH_MODE", "HS256").upper()
    claims = {"issuer": os.environ.get("JWT_ISSUER") or None, "audience": os.environ.get("JWT_AUDIENCE") or None}
    if mode == "HS256":
        return hs256_verifier(_jwt_secret, secret_max_age_s=SECRET_MAX_AGE_S, **claims)
    if mode == "RS256":
        return rs256_verifier(os.environ.get("JWKS_URL", ""), **claims)
    raise RuntimeError(f"AUTH_MODE must be HS256 or RS256, got {mode!r}")


_verifier = _verifier_from_env()


def authorizer_route() -> Handler:
    """REQUEST authorizer for `$connect`: `Unauthorized` (401) for a bad token, Deny (403) for a foreign Origin."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
        method_arn = event.get("methodArn", "")
        token = (event.get("queryStringParameters") or {}).get("token")
        try:
            identity = _verifier.verify(token)
        except TokenRejected as rejection:
            logger.info("token rejected", extra={"reason": str(rejection)})
            raise Exception("Unauthorized")  # API Gateway's contract for a 401
        if not origin_allowed(headers.get("origin"), os.environ.get("ALLOWED_ORIGINS", "")):
            origin = headers.get("origin")
            logger.warning(
                f"origin {origin} refused: it is not in ALLOWED_ORIGINS. Locally: `make dev ORIGINS={origin}` "
                "(parley dev --allow-origins); deployed: add it to the AllowedOrigins parameter",
                extra={"origin": origin},
            )
            return policy(identity.user_id, "Deny", method_arn)
        return policy(identity.user_id, "Allow", method_arn, identity.context())

    return logger.inject_lambda_context(clear_state=True)(handler)
