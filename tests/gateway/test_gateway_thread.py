"""The test harness's gateway thread: a loop that dies is reported, and stopping it does not hang."""

from __future__ import annotations

import time
from pathlib import Path

from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_gateway_whose_loop_dies_is_reported_once_and_stops_at_once(tmp_path: Path):
    g = RunningGateway(SMALL_TEMPLATE, tmp_path, prewarm=False, stream_events=False, reload=False).start()
    try:
        assert RunningGateway.deaths() == []
        # What a fake clock that runs out does inside the loop's own code: not a callback's error, which the loop
        # would log and survive, but an exception out of run_forever.
        g.loop.call_soon_threadsafe(_raise, SystemExit("the loop's clock ran out"))
        g.thread.join(5)
        assert not g.thread.is_alive()
        assert RunningGateway.deaths() == [f"{g.ws_url}: SystemExit(\"the loop's clock ran out\")"]
        assert RunningGateway.deaths() == []  # once: the later tests are not blamed
    finally:
        began = time.monotonic()
        g.stop()
        assert time.monotonic() - began < 1.0
