"""The code watcher's snapshot is taken before `start()` returns, so no save after ready is missed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley_local.gateway.code_watch import CodeWatcher


async def test_a_save_right_after_start_is_reported(tmp_path: Path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")
    reported: asyncio.Queue[set[Path]] = asyncio.Queue()

    async def on_change(paths: set[Path]) -> None:
        reported.put_nowait(paths)

    watcher = CodeWatcher([tmp_path], on_change, interval_s=0.02)
    await watcher.start()
    try:
        template.write_text("Resources: [not, a, map\n")  # no loop turn between ready and the save
        assert await asyncio.wait_for(reported.get(), 5) == {template}
    finally:
        watcher.stop()


async def test_a_burst_of_saves_is_reported_once_it_settles(tmp_path: Path):
    files = [tmp_path / f"m{i}.py" for i in range(3)]
    for f in files:
        f.write_text("x = 0\n")
    reported: asyncio.Queue[set[Path]] = asyncio.Queue()

    async def on_change(paths: set[Path]) -> None:
        reported.put_nowait(paths)

    watcher = CodeWatcher([tmp_path], on_change, interval_s=0.05)
    await watcher.start()
    try:
        for f in files:
            f.write_text("x = 1  # edited\n")
        (tmp_path / "__pycache__").mkdir()
        (tmp_path / "__pycache__" / "m0.cpython-313.pyc").write_bytes(b"\0")  # ignored
        assert await asyncio.wait_for(reported.get(), 5) == set(files)
        await asyncio.sleep(0.3)
        assert reported.empty()  # one report for the burst
    finally:
        watcher.stop()
