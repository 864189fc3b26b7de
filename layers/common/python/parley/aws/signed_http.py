"""One SigV4-signed HTTPS call over a pooled urllib3 connection, for the calls a fan-out makes by
the hundred (PostToConnection, async Lambda Invoke).

Why not boto3 for these: its per-call pipeline (parameter validation, serialisation, event
hooks, response parsing) costs about 1 ms of CPU per PostToConnection and 3 ms per Invoke, and
at Lambda's CPU share (256 MB: 0.145 of a vCPU) that is 7-20 ms of wall time per call: the
fan-out's whole budget.

Why not botocore's `SigV4Auth` either: its request and header objects, built afresh for every
call, made the signing about 0.15 ms of CPU per post, for requests that differ only in path, body
and time. `SigV4Signer` computes the same signature from plain strings, with the day's signing key
derived once a day rather than per request: a fan-out shard of 100 posts costs 0.83x the CPU it
did (`benchmarks/handler_cpu_bench.py`, `fanout_shard`; the rest is urllib3 and http.client). The credentials are still the ones botocore found (refreshed as botocore refreshes
them), and `tests/handlers/test_signed_http.py` holds the result to `SigV4Auth`'s, header for
header, across the requests Parley makes.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import random
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import urllib3
from botocore.utils import normalize_url_path

# Worth another attempt (with backoff): throttling and the service's own failures.
RETRYABLE_ERRORS = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequestsException"})

ALGORITHM = "AWS4-HMAC-SHA256"
DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers SigV4 leaves out (botocore's list): hop-by-hop, or changed by proxies on the way.
UNSIGNED_HEADERS = frozenset({
    "authorization", "baggage", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "traceparent", "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
})


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class SigV4Signer:
    """Signs requests to one service in one region with Signature Version 4 (the Authorization header).

    URLs with a query string are refused rather than signed: the calls signed here have none, and
    a canonical query this class does not build would only fail on AWS, as a 403."""

    def __init__(self, credentials: Any, service: str, region: str, *, now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self._credentials = credentials
        self.service = service
        self.region = region
        self._now = now
        self._key: tuple[str, str, bytes] | None = None  # (secret key, date, signing key)

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode("utf-8"), day), self.region), self.service), "aws4_request")
        self._key = (secret, day, key)
        return key

    def headers(self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> dict[str, str]:
        """`headers` plus X-Amz-Date, X-Amz-Security-Token (temporary credentials) and Authorization."""
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ValueError(f"SigV4Signer signs URLs without a query or fragment, not {url!r}")
        credentials = self._credentials.get_frozen_credentials()
        stamp = self._now().strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = dict(headers or {})
        signed["X-Amz-Date"] = stamp
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        canonical = {"host": host}
        for name, value in signed.items():
            if name.lower() not in UNSIGNED_HEADERS:
                canonical[name.lower()] = " ".join(value.split())
        names = sorted(canonical)
        signed_headers = ";".join(names)
        request = "\n".join((
            method.upper(),
            quote(normalize_url_path(parts.path), safe="/~"),
            "",
            "".join(f"{name}:{canonical[name]}\n" for name in names),
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ))
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode('utf-8')).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        signed["Authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                   f"SignedHeaders={signed_headers}, Signature={signature}")
        return signed


class SignedOrigin:
    """Signed calls to one origin (scheme, host and port) over its own pool of kept-alive connections.

    Why not urllib3's PoolManager: it parses, normalises and re-encodes the whole URL on every call to
    find the pool (a long `@connections` path is percent-encoded one character at a time, twice); here
    the pool is found once and a call names its path. A fan-out shard of 100 posts (and one claim
    write) costs 0.90x the CPU it did (`benchmarks/handler_cpu_bench.py --baseline`, `fanout_shard`)."""

    def __init__(self, base_url: str, signer: SigV4Signer, *, maxsize: int, timeout: urllib3.Timeout) -> None:
        parts = urlsplit(base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/")
        self.signer = signer
        self._pool = urllib3.connection_from_url(self.origin, maxsize=maxsize, block=True, retries=False, timeout=timeout)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
        """The HTTP status and the `x-amzn-ErrorType` (its name only) of one signed call to `base_path + path`.

        Raises urllib3's HTTPError on connection errors and timeouts."""
        target = self.base_path + path
        signed = self.signer.headers(method, self.origin + target, body, headers)
        response = self._pool.urlopen(method, target, body=body or None, headers=signed, preload_content=True,
                                      retries=False)
        return response.status, response.headers.get("x-amzn-ErrorType", "").split(":")[0]


def retryable(status: int, error_type: str) -> bool:
    return status == 429 or status >= 500 or error_type in RETRYABLE_ERRORS


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter, before attempt `attempt + 1`."""
    return random.uniform(0, min(cap, base * 2**attempt))
