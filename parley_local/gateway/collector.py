"""The garbage collector's settings while gateways serve, shared by every gateway in the process.

A serving gateway keeps start-up's objects (modules, botocore's models, the template) out of the
collector's walks with `gc.freeze`, and collects its young generation less often (profiled: one
~120 ms full collection in a 2,000-connection storm, and ~86 -> 40 µs of collection per connection).
Both settings belong to the process, not to a gateway: with several gateways in one process (a test
session's fixtures), the first to stop must not hand them back while another still serves, and a
gateway started while another serves must not make the raised threshold the one restored. So the
settings are counted: the first gateway to serve raises the threshold, each start freezes what exists
then, and the last to stop unfreezes and restores the threshold the first one found.
"""

from __future__ import annotations

import gc
import threading
from types import ModuleType
from typing import Any

YOUNG_COLLECTION_EVERY = 20_000  # the collector's young-generation threshold while serving (Python's default: 2,000)


class ServingCollector:
    """How many gateways of this process serve, and the thresholds to restore when none does."""

    def __init__(self, collector: ModuleType | Any = gc) -> None:
        self._gc = collector  # the `gc` module; a stand-in in the pure tests, whose process has gateways serving
        self._lock = threading.Lock()  # the tests' gateways start and stop on threads of their own
        self._serving = 0
        self._restore: tuple[int, ...] | None = None

    @property
    def serving(self) -> int:
        return self._serving

    def gateway_started(self) -> None:
        with self._lock:
            # What this start made lives as long as the gateway. A second gateway's freeze also moves the
            # first's connections to the permanent generation; they are given back with the last stop.
            self._gc.freeze()
            if self._serving == 0:
                # A young collection every YOUNG_COLLECTION_EVERY container allocations, not every 2,000: a
                # handshake allocates a few hundred, most freed at once, and each collection walks every young
                # object still alive. Fewer collections walk those no less often but pay each collection's
                # fixed cost, and the older generations' (which the young count drives), less often.
                self._restore = self._gc.get_threshold()
                self._gc.set_threshold(YOUNG_COLLECTION_EVERY, *self._restore[1:])
            self._serving += 1

    def gateway_stopped(self) -> None:
        """Once per `gateway_started`: the last gateway to stop hands everything back to the collector."""
        with self._lock:
            if self._serving == 0:
                raise RuntimeError("gateway_stopped() without a gateway_started() to match it")
            self._serving -= 1
            if self._serving == 0:
                self._gc.unfreeze()
                if self._restore is not None:
                    self._gc.set_threshold(*self._restore)
                    self._restore = None


SERVING_COLLECTOR = ServingCollector()
