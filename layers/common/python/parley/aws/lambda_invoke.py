"""`parley.core.ports.ShardDispatcher` on Lambda's asynchronous Invoke: one event per fan-out shard.

Lambda queues each event, runs the fan-out function on it (in parallel, one environment per
shard), retries a failed one twice, and sends one that still fails to the function's on-failure
destination (a queue, alarmed). boto3 is imported on the first large room only: most
invocations never shard, and a boto3 client costs tens of milliseconds of cold start.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.model import ShardJob

# Invoke calls in flight while handing out one broadcast's shards.
MAX_PARALLEL_INVOKES = 16


class LambdaShardDispatcher:
    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self._client: Any = None
        self._lock = threading.Lock()

    def _lambda(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client("lambda", config=Config(retries={"mode": "standard", "max_attempts": 5}))
            return self._client

    def dispatch(self, jobs: list[ShardJob]) -> list[ShardJob]:
        """Queue every shard; returns the ones Lambda did not accept (throttled after retries, or
        no such function where this runs), for the caller to deliver itself."""
        client = self._lambda()

        def invoke(job: ShardJob) -> ShardJob | None:
            payload = json.dumps(job.to_event(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            try:
                client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
            except Exception:  # botocore's ClientError and connection errors alike: not queued
                return job
            return None

        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_INVOKES, len(jobs)) or 1) as pool:
            return [job for job in pool.map(invoke, jobs) if job is not None]
