"""`parley.core.ports.Sender` on the `@connections` management API (PostToConnection, DeleteConnection).

A `FanoutJob` is a self-contained unit (payload + recipients), so very large rooms can be
sharded across invocations of a fan-out function running this same code.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence
from urllib.parse import quote

import urllib3
from botocore.session import get_session

from ..core.model import FanoutJob, FanoutResult
from .signed_http import SigV4Signer, SignedOrigin, backoff_s, retryable


class ManagementApiSender:
    """Posts a job's payload to every connection with at most `max_in_flight` calls at once.

    410 means the connection is gone: reported in `gone`, never retried. 429 and 5xx, and
    connection errors and timeouts, are retried with capped exponential backoff and full
    jitter; what still fails is reported in `failed` so the caller can tell the sender.

    It speaks PostToConnection directly (`signed_http`: a SigV4-signed POST over a pooled
    urllib3 connection) rather than through `client.post_to_connection`: a fan-out makes
    thousands of identical calls, and boto3's per-call pipeline (about 1 ms of CPU each) would
    dominate the fan-out time; not building a boto3 client also keeps it off the cold start.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        max_in_flight: int = 64,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 4,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        region: str | None = None,
        credentials: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.max_in_flight = max(1, max_in_flight)
        self._region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._api = SignedOrigin(
            self.endpoint_url, SigV4Signer(credentials or get_session().get_credentials(), "execute-api", self._region),
            maxsize=self.max_in_flight, timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def _threads(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="fanout")
            return self._executor

    def send(self, job: FanoutJob) -> FanoutResult:
        result = FanoutResult()
        ids = list(dict.fromkeys(job.connection_ids))
        if len(ids) == 1:
            outcomes: Sequence[tuple[str, str, str]] = [self._post(ids[0], job.payload)]
        else:
            outcomes = list(self._threads().map(lambda cid: self._post(cid, job.payload), ids))
        for connection_id, outcome, reason in outcomes:
            if outcome == "delivered":
                result.delivered.add(connection_id)
            elif outcome == "gone":
                result.gone.add(connection_id)
            else:
                result.failed[connection_id] = reason
        return result

    def close(self, connection_id: str) -> bool:
        """DeleteConnection: API Gateway closes the socket and runs `$disconnect`. False if already gone."""
        try:
            status, _ = self._request(connection_id, b"", method="DELETE")
        except urllib3.exceptions.HTTPError:
            return False
        return 200 <= status < 300

    def _request(self, connection_id: str, payload: bytes, method: str = "POST") -> tuple[int, str]:
        """One signed call; returns the HTTP status and the `x-amzn-ErrorType` it carried."""
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        return self._api.request(method, f"/@connections/{quote(connection_id, safe='')}", payload, headers)

    def _post(self, connection_id: str, payload: bytes) -> tuple[str, str, str]:
        reason = ""
        for attempt in range(self._max_attempts):
            try:
                status, error_type = self._request(connection_id, payload)
                if 200 <= status < 300:
                    return connection_id, "delivered", ""
                if status == 410:
                    return connection_id, "gone", error_type or "GoneException"
                reason = error_type or f"HTTP {status}"
                if not retryable(status, error_type):
                    return connection_id, "failed", reason
            except urllib3.exceptions.HTTPError as error:  # timeouts, refused, reset
                reason = type(error).__name__
            if attempt + 1 < self._max_attempts:
                self._sleep(backoff_s(attempt, self._backoff_base, self._backoff_cap))
        return connection_id, "failed", reason


_senders: dict[tuple[str, int], ManagementApiSender] = {}
_senders_lock = threading.Lock()


def sender_for(endpoint_url: str, max_in_flight: int) -> ManagementApiSender:
    """One sender (client, connection pool, threads) per endpoint for the life of the environment."""
    key = (endpoint_url, max_in_flight)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None:
            sender = _senders[key] = ManagementApiSender(endpoint_url, max_in_flight=max_in_flight)
        return sender
