"""`parley.core.ports.ShardDispatcher` on Lambda's asynchronous Invoke: one event per fan-out shard
(and one for the reading of a large room beyond the handler's page, a `RoomContinuation`).

Lambda queues each event, runs the fan-out function on it (in parallel, one environment per
shard), retries a failed one twice, and sends one that still fails to the function's on-failure
destination (a queue, alarmed).

The Invoke calls are SigV4-signed POSTs over a pooled connection (`signed_http`), not boto3's
`invoke`: boto3 costs about 3 ms of CPU per call, which at `chat_message`'s CPU share made the
hand-off of a 10,000-member room's 100 shards take seconds (benchmarks/lambda_share_bench.py).
Nothing is built until the first large room: most invocations never shard.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence
from urllib.parse import quote

import urllib3

from ..core.model import FanoutWork
from .signed_http import SigV4Signer, SignedOrigin, backoff_s, retryable

# Invoke calls in flight while handing out one broadcast's shards.
MAX_PARALLEL_INVOKES = 32
# Throttled or failed Invoke calls are retried this many times in all, with capped backoff.
MAX_ATTEMPTS = 5


def lambda_endpoint(region: str) -> str:
    """Where the Lambda API is: the standard boto3 endpoint variables (`parley dev` sets the first), else AWS's."""
    return (os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://lambda.{region}.amazonaws.com").rstrip("/")


class LambdaShardDispatcher:
    def __init__(self, function_name: str, *, sleep: Callable[[float], None] = time.sleep,
                 backoff_base: float = 0.05, backoff_cap: float = 1.0) -> None:
        self.function_name = function_name
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._ready: tuple[SignedOrigin, str, ThreadPoolExecutor] | None = None
        self._lock = threading.Lock()

    def _client(self) -> tuple[SignedOrigin, str, ThreadPoolExecutor]:
        """The Lambda API's signed origin (credentials and region), the Invoke path and the threads, made once per environment."""
        with self._lock:
            if self._ready is None:
                from botocore.session import get_session

                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                path = f"/2015-03-31/functions/{quote(self.function_name, safe='')}/invocations"
                api = SignedOrigin(lambda_endpoint(region), SigV4Signer(get_session().get_credentials(), "lambda", region),
                                   maxsize=MAX_PARALLEL_INVOKES, timeout=urllib3.Timeout(connect=2.0, read=5.0))
                threads = ThreadPoolExecutor(max_workers=MAX_PARALLEL_INVOKES, thread_name_prefix="invoke")
                self._ready = (api, path, threads)
            return self._ready

    def _invoke(self, job: FanoutWork) -> FanoutWork | None:
        """Queue one shard or continuation (202); the job back when Lambda would not take it after the retries."""
        api, path, _ = self._client()
        payload = json.dumps(job.to_event(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"}
        for attempt in range(MAX_ATTEMPTS):
            try:
                status, error_type = api.request("POST", path, payload, headers)
                if status == 202:
                    return None
                if not retryable(status, error_type):
                    return job  # no such function, not allowed, payload too large: retrying cannot help
            except urllib3.exceptions.HTTPError:  # timeouts, refused, reset
                pass
            if attempt + 1 < MAX_ATTEMPTS:
                self._sleep(backoff_s(attempt, self._backoff_base, self._backoff_cap))
        return job

    def dispatch(self, jobs: Sequence[FanoutWork]) -> list[FanoutWork]:
        """Queue every job; returns the ones Lambda did not accept (throttled after retries, or
        no such function where this runs), for the caller to run itself."""
        threads = self._client()[2]
        return [job for job in threads.map(self._invoke, jobs) if job is not None]
