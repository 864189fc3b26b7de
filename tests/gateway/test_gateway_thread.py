"""The test harness's gateway thread: a loop that dies is reported, and stopping it still cleans up."""

from __future__ import annotations

from pathlib import Path

from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway
from parley_testing.waiting import wait_for


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_gateway_whose_loop_died_is_stopped_all_the_same_and_reported_once(tmp_path: Path):
    g = RunningGateway(SMALL_TEMPLATE, tmp_path, prewarm=False, stream_events=False, reload=False).start()
    stopped = False
    try:
        moto_pid = g.gateway.aws.pid  # the local DynamoDB the gateway started (moto, a subprocess)
        assert moto_pid is not None and Path(f"/proc/{moto_pid}").exists()
        assert RunningGateway.deaths() == []
        # What a fake clock that runs out does inside the loop's own code: not a callback's error, which the loop
        # would log and survive, but an exception out of run_forever.
        g.loop.call_soon_threadsafe(_raise, SystemExit("the loop's clock ran out"))
        g.thread.join(5)
        assert not g.thread.is_alive()
        g.stop()  # as a test's own `finally` would: the death is still reported afterwards
        stopped = True
        assert wait_for(lambda: not _running(moto_pid), 10, what="moto stopped")  # the clean-up ran on this thread
        assert RunningGateway.deaths() == [f"{g.ws_url}: SystemExit(\"the loop's clock ran out\")"]
        assert RunningGateway.deaths() == []  # once: the later tests are not blamed
        assert g not in RunningGateway.running
    finally:
        if not stopped:
            g.stop()
