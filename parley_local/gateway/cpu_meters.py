"""How busy the machine's CPUs are, as the worker pool asks before it starts another environment.

Why a module of its own: starting an environment costs 0.4-1 s of CPU (its imports), which pays only
when a function's environments, not the machine, are what invocations wait for. These meters read
the kernel's counters (`/proc/stat`, `/proc/PID/schedstat`) through injectable readers and clocks, so
the pool's scaling rules are tested with scripted readings (tests/gateway/test_gw_units.py) and never
depend on how busy the test machine happens to be.
"""

from __future__ import annotations

import os
import time
from typing import Callable


class CpuIdleMeter:
    """The machine's idle CPUs over the last second or so, from /proc/stat's counters.

    Why not the load average: it trails by a minute. At the start of a burst (1,000 handshakes,
    or the `$disconnect` of every socket on Ctrl-C) it still reads "idle" while the burst has
    taken every CPU, and each environment started then only adds its ~0.7 s import to the queue.

    Why "not known yet" after a quiet spell: the counters are read only when a pool looks (every
    `worker_pool.COLD_START_DELAY_S` while invocations wait), so the first look of a burst would
    span the idle minutes before it and say "spare" just as the burst takes every CPU. That look
    starts a short window instead (RESUME_WINDOW_S), and until it ends the answer is unknown.
    """

    WINDOW_S = 1.0  # sustained idleness, not a gap between two bursts of another process
    STALE_S = 2.0  # a reading this old tells of an earlier time, not of now
    RESUME_WINDOW_S = 0.2  # the first window after a stale reading: a burst's first fifth of a second

    def __init__(self, read: Callable[[], tuple[int, int] | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, cpu_count: Callable[[], int | None] = os.cpu_count,
                 load_average: Callable[[], float] | None = None) -> None:
        self._read = read or self.read_proc_stat  # injected, never patched: a gateway thread in a test process reads the real one
        self._clock = clock
        self.cpu_count = cpu_count
        self.load_average = load_average or self.one_minute_load
        self._then = self._read()
        self._at = clock()
        self._idle_cpus: float | None = None
        self._window_s = self.WINDOW_S
        self.resuming = False  # a stale reading was dropped and the short window after it has not ended

    @staticmethod
    def read_proc_stat() -> tuple[int, int] | None:
        """(idle + iowait ticks, all ticks) of every CPU, or None where /proc/stat is missing."""
        try:
            with open("/proc/stat", "rb") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return ticks[3] + ticks[4], sum(ticks)

    @staticmethod
    def one_minute_load() -> float:
        """The 1-minute load average (AttributeError where the platform has none, OSError where it is unknown)."""
        return os.getloadavg()[0]

    def idle_cpus(self) -> float | None:
        """How many CPUs were idle on average over the last window (None: not known here, or not yet)."""
        now = self._clock()
        if now - self._at < self._window_s:
            return self._idle_cpus
        current = self._read()
        if now - self._at >= self.STALE_S:
            self._idle_cpus, self._window_s, self.resuming = None, self.RESUME_WINDOW_S, current is not None
        else:
            if current is not None and self._then is not None and current[1] > self._then[1]:
                share = (current[0] - self._then[0]) / (current[1] - self._then[1])
                self._idle_cpus = share * (self.cpu_count() or 1)
            self._window_s, self.resuming = self.WINDOW_S, False
        self._then, self._at = current, now
        return self._idle_cpus


_CPU_IDLE = CpuIdleMeter()


class CpuWaitMeter:
    """Whether a function's environments have been waiting for a CPU more than running on one, from the
    kernel's scheduler statistics of each (`/proc/PID/schedstat`: ns on a CPU, ns runnable but not running).

    Why: an invocation that waits 0.1 s for a busy environment gets another one
    (`worker_pool.BURST_WORKERS`), which pays when the environment is the bottleneck (a room's ten
    fan-out shards, one after another) but not when the machine is: in a connection burst the
    authorizer's environment is runnable most of the time and waits for one of the two cores, and a
    second environment would wait beside it after an import of 0.4-1 s of CPU (the default log's run
    started two such, a third of the burst's CPU, and `--quiet`'s none)."""

    FRESH_S = 0.5  # an older reading spans a quieter time than the wait being judged

    def __init__(self, read: Callable[[int], tuple[int, int] | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read or self.read_schedstat
        self._clock = clock
        self._last: dict[int, tuple[float, int, int]] = {}  # pid -> (when, ns running, ns waiting)

    @staticmethod
    def read_schedstat(pid: int) -> tuple[int, int] | None:
        try:
            with open(f"/proc/{pid}/schedstat", "rb") as f:
                ran, waited = f.read().split()[:2]
            return int(ran), int(waited)
        except (OSError, ValueError):
            return None

    def starved(self, pids: list[int]) -> bool | None:
        """True: they waited for a CPU longer than they ran since the last look; None: not known yet (no
        fresh earlier reading, or no schedstat here)."""
        now = self._clock()
        ran = waited = 0
        known = False
        seen: dict[int, tuple[float, int, int]] = {}
        for pid in pids:
            current = self._read(pid)
            if current is None:
                continue
            seen[pid] = (now, *current)
            before = self._last.get(pid)
            if before is not None and now - before[0] <= self.FRESH_S:
                known = True
                ran += current[0] - before[1]
                waited += current[1] - before[2]
        self._last = seen
        if not known:
            return None
        return waited > ran


def cpu_to_spare(meter: CpuIdleMeter = _CPU_IDLE) -> bool:
    """Whether another worker could run now: half a CPU idle over the last second (or, where
    /proc/stat is missing, a 1-minute load average below the number of CPUs)."""
    idle = meter.idle_cpus()
    if idle is not None:
        return idle >= 0.5
    if meter.resuming:  # the first fifth of a second after a quiet spell: not known, so no
        return False
    try:
        return meter.load_average() < (meter.cpu_count() or 1)
    except (AttributeError, OSError):  # nothing tells how busy the machine is: a burst may have its second environment
        return True
