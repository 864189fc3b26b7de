"""Turn a Lambda REQUEST authorizer's outcome into API Gateway's decision (no I/O).

Why: API Gateway's rules are subtle and clients see them as HTTP statuses on
the handshake: the authorizer raising `Exception("Unauthorized")` gives 401,
an IAM policy that does not Allow `execute-api:Invoke` on the method ARN (or
Denies it) gives 403, anything malformed gives 500. An Allow makes
`{principalId, ...context}` the connection's `requestContext.authorizer`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

MAX_RESULT_BYTES = 8192


@dataclass
class Decision:
    status: int  # 200 allow, 401, 403 or 500
    authorizer: dict[str, Any] | None = None
    reason: str = ""


def missing_identity(sources: list[str], headers: dict[str, str], query: dict[str, str] | None) -> bool:
    """True when an identity source is absent or empty: API Gateway answers 401 without invoking the authorizer."""
    lower_headers = {k.lower(): v for k, v in headers.items()}
    for source in sources:
        source = source.strip()
        if source.startswith("route.request.querystring."):
            if not (query or {}).get(source.split(".", 3)[3]):
                return True
        elif source.startswith("route.request.header."):
            if not lower_headers.get(source.split(".", 3)[3].lower()):
                return True
    return False


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, str(p)) for p in _as_list(patterns))


def decide(result: Any, error_message: str | None, method_arn: str) -> Decision:
    """API Gateway's verdict on an authorizer invocation (`error_message` set when the function failed)."""
    if error_message is not None:
        if error_message == "Unauthorized":
            return Decision(401, reason="Unauthorized")
        return Decision(500, reason=f"authorizer failed: {error_message}")
    if not isinstance(result, dict):
        return Decision(500, reason="authorizer returned no policy")
    if len(json.dumps(result)) > MAX_RESULT_BYTES:
        return Decision(500, reason="authorizer result over 8 KB")
    principal = result.get("principalId")
    policy = result.get("policyDocument")
    if principal is None or not isinstance(policy, dict):
        return Decision(500, reason="authorizer result lacks principalId or policyDocument")
    context = result.get("context") or {}
    if not isinstance(context, dict) or any(
        not isinstance(v, (str, int, float, bool)) or v is None for v in context.values()
    ):
        return Decision(500, reason="authorizer context values must be strings, numbers or booleans")
    allowed = False
    for stmt in _as_list(policy.get("Statement") or []):
        if not isinstance(stmt, dict):
            return Decision(500, reason="malformed policy statement")
        if not _matches(stmt.get("Action", ""), "execute-api:Invoke"):
            continue
        if not _matches(stmt.get("Resource", ""), method_arn):
            continue
        effect = str(stmt.get("Effect", "")).lower()
        if effect == "deny":
            return Decision(403, reason="policy denies")
        if effect == "allow":
            allowed = True
    if not allowed:
        return Decision(403, reason="policy does not allow")
    return Decision(200, authorizer={"principalId": principal, **context})
