"""One SigV4-signed HTTPS call over a pooled urllib3 connection, for the calls a fan-out makes by
the hundred (PostToConnection, async Lambda Invoke).

Why not boto3 for these: its per-call pipeline (parameter validation, serialisation, event
hooks, response parsing) costs about 1 ms of CPU per PostToConnection and 3 ms per Invoke, and
at Lambda's CPU share (256 MB: 0.145 of a vCPU) that is 7-20 ms of wall time per call: the
fan-out's whole budget. Signing stays botocore's (SigV4Auth), with the credentials botocore
found, so nothing about authentication is hand-made.
"""

from __future__ import annotations

import random
from typing import Any

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

# Worth another attempt (with backoff): throttling and the service's own failures.
RETRYABLE_ERRORS = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequestsException"})


def signed_request(
    pool: urllib3.PoolManager, credentials: Any, service: str, region: str, method: str, url: str,
    body: bytes = b"", headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """The HTTP status and the `x-amzn-ErrorType` (its name only) of one signed call.

    Raises urllib3's HTTPError on connection errors and timeouts."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
    prepared = request.prepare()
    response = pool.urlopen(method, url, body=body or None, headers=dict(prepared.headers.items()), preload_content=True)
    return response.status, response.headers.get("x-amzn-ErrorType", "").split(":")[0]


def retryable(status: int, error_type: str) -> bool:
    return status == 429 or status >= 500 or error_type in RETRYABLE_ERRORS


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter, before attempt `attempt + 1`."""
    return random.uniform(0, min(cap, base * 2**attempt))
