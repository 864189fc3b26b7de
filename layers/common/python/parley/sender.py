"""Delivery through the `@connections` management API.

A `FanoutJob` is a self-contained unit (payload + recipients) so that very large rooms can
later be sharded through a queue to a separate fan-out worker running this same code.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError


@dataclass(frozen=True)
class FanoutJob:
    payload: bytes
    connection_ids: tuple[str, ...]


@dataclass
class FanoutResult:
    delivered: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "FanoutResult") -> None:
        self.delivered |= other.delivered
        self.gone |= other.gone
        self.failed.update(other.failed)


class Sender(Protocol):
    def send(self, job: FanoutJob) -> FanoutResult: ...


_RETRYABLE_CODES = {"LimitExceededException", "ThrottlingException", "TooManyRequestsException", "InternalServerError"}


class ManagementApiSender:
    """Posts a job's payload to every connection with at most `max_in_flight` calls at once.

    410 means the connection is gone: reported in `gone`, never retried. 429 and 5xx, and
    connection errors and timeouts, are retried with capped exponential backoff and full
    jitter; what still fails is reported in `failed` so the caller can tell the sender.
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
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.max_in_flight = max(1, max_in_flight)
        self._client = client or boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # Retries are ours: botocore's would hide 410s behind delays and double-count.
                retries={"total_max_attempts": 1},
                max_pool_connections=self.max_in_flight,
                tcp_keepalive=True,
            ),
        )
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="fanout")
            return self._pool

    def send(self, job: FanoutJob) -> FanoutResult:
        result = FanoutResult()
        ids = list(dict.fromkeys(job.connection_ids))
        if len(ids) == 1:
            outcomes: Sequence[tuple[str, str, str]] = [self._post(ids[0], job.payload)]
        else:
            outcomes = list(self._executor().map(lambda cid: self._post(cid, job.payload), ids))
        for connection_id, outcome, reason in outcomes:
            if outcome == "delivered":
                result.delivered.add(connection_id)
            elif outcome == "gone":
                result.gone.add(connection_id)
            else:
                result.failed[connection_id] = reason
        return result

    def _post(self, connection_id: str, payload: bytes) -> tuple[str, str, str]:
        reason = ""
        for attempt in range(self._max_attempts):
            try:
                self._client.post_to_connection(ConnectionId=connection_id, Data=payload)
                return connection_id, "delivered", ""
            except ClientError as error:
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = error.response.get("Error", {}).get("Code", "")
                if status == 410 or code == "GoneException":
                    return connection_id, "gone", code or "410"
                if not (status == 429 or status >= 500 or code in _RETRYABLE_CODES):
                    return connection_id, "failed", code or str(status)
                reason = code or str(status)
            except (BotoConnectionError, BotoCoreError) as error:
                reason = type(error).__name__
            if attempt + 1 < self._max_attempts:
                self._sleep(random.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt)))
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
