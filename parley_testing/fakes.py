"""Fakes for the ports `ChatService` takes besides the store: a clock, a sender, metrics and logs."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

from parley.core.model import FanoutJob, FanoutResult, FanoutWork, RoomContinuation


class FakeClock:
    """Epoch milliseconds that move only when a test says so. Starts at the real time, because
    ULIDs are monotonic per process and a clock in the past would pin them to an earlier mint."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = int(time.time() * 1000) if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


class RecordingSender:
    """`parley.core.ports.Sender` that records every post and close.

    `is_gone(connection_id)` answers like a 410 (the default: nothing is gone); `failing` maps a
    connection to the reason its posts fail after retries (like a persistent 500).
    """

    def __init__(self, is_gone: Callable[[str], bool] = lambda connection_id: False) -> None:
        self.is_gone = is_gone
        self.failing: dict[str, str] = {}
        self.posted: dict[str, list[bytes]] = defaultdict(list)  # delivered payloads per connection, in order
        self.jobs: list[FanoutJob] = []
        self.closed: list[str] = []

    @property
    def posts(self) -> int:
        """PostToConnection calls made, including those that found the connection gone or failing."""
        return sum(len(job.connection_ids) for job in self.jobs)

    def send(self, job: FanoutJob) -> FanoutResult:
        self.jobs.append(job)
        result = FanoutResult()
        for connection_id in dict.fromkeys(job.connection_ids):
            if self.is_gone(connection_id):
                result.gone.add(connection_id)
            elif connection_id in self.failing:
                result.failed[connection_id] = self.failing[connection_id]
            else:
                self.posted[connection_id].append(job.payload)
                result.delivered.add(connection_id)
        return result

    def close(self, connection_id: str) -> bool:
        self.closed.append(connection_id)
        return not self.is_gone(connection_id)

    def drain(self) -> dict[str, list[bytes]]:
        """The payloads delivered since the last drain, per connection."""
        posted, self.posted = self.posted, defaultdict(list)
        return posted


class RecordingMetrics:
    """A `MetricSink` that sums each metric."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    def __call__(self, name: str, value: float) -> None:
        self.totals[name] += value


class RecordingLogger:
    """A `parley.core.ports.Logger` that keeps (level, message, extra)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, msg: str, extra: Mapping[str, Any] | None) -> None:
        self.lines.append((level, msg, dict(extra or {})))

    def info(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._log("INFO", msg, extra)

    def warning(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._log("WARNING", msg, extra)

    def exception(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        self._log("ERROR", msg, extra)


class ShardQueue:
    """`parley.core.ports.ShardDispatcher` that keeps the jobs for the test to run (or lose)."""

    def __init__(self) -> None:
        self.jobs: list[FanoutWork] = []
        self.dispatched: list[FanoutWork] = []
        self.refuse: set[int] = set()  # shard numbers to refuse, like a throttled Invoke
        self.refuse_continuations = False

    def _refused(self, job: FanoutWork) -> bool:
        return self.refuse_continuations if isinstance(job, RoomContinuation) else job.shard in self.refuse

    def dispatch(self, jobs: Sequence[FanoutWork]) -> list[FanoutWork]:
        accepted = [job for job in jobs if not self._refused(job)]
        self.jobs.extend(accepted)
        self.dispatched.extend(accepted)
        return [job for job in jobs if self._refused(job)]
