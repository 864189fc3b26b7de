"""Check a received request's SigV4 signature the way AWS does, with botocore's own signer.

Why here and not in `parley`: the project signs its hottest calls with `parley.aws.signed_http`'s
own signer; the tests hold it to botocore's `SigV4Auth` on the request as it arrived (its path,
the headers it says it signed, its body and its X-Amz-Date), so a difference in any canonical
detail shows up as a mismatch, not as a 403 on AWS.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def signature_problem(credentials: Any, method: str, url: str, headers: Mapping[str, str], body: bytes,
                      scope: tuple[str, str] | None = None) -> str | None:
    """None when `headers["Authorization"]` is botocore's signature of this request with
    `credentials` (a botocore Credentials), for `scope` (region, service) when given, else what is
    wrong with it. Without `scope`, a request signed for another region or service passes: the
    signature is checked against the scope the request names."""
    lower = {k.lower(): v for k, v in headers.items()}
    m = _AUTHORIZATION.match(lower.get("authorization", ""))
    if m is None:
        return f"not a SigV4 Authorization header: {lower.get('authorization')!r}"
    if scope is not None and (m["region"], m["service"]) != scope:
        return f"signed for {m['region']}/{m['service']}, not {scope[0]}/{scope[1]}"
    frozen = credentials.get_frozen_credentials()
    if m["key"] != frozen.access_key:
        return f"signed with access key {m['key']}, not {frozen.access_key}"
    stamp = lower.get("x-amz-date", "")
    if stamp[:8] != m["day"]:
        return f"X-Amz-Date {stamp!r} is not of the scope's day {m['day']}"
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return f"host and x-amz-date must be signed, SignedHeaders={m['signed']}"
    if frozen.token and (lower.get("x-amz-security-token") != frozen.token or "x-amz-security-token" not in signed):
        return "the session token is missing or not signed"
    request = AWSRequest(method=method, url=url, data=body, headers={k: lower[k] for k in signed if k in lower})
    request.context["timestamp"] = stamp
    auth = SigV4Auth(frozen, m["service"], m["region"])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if expected != m["signature"]:
        return f"signature mismatch: botocore computes {expected} for this request, the header carries {m['signature']}"
    return None
