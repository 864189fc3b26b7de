"""Notice when a function's code, a layer or the template changes on disk, so the gateway can redeploy.

Why polling: it needs no dependency and no OS-specific API, and the folders are small (a
function's `CodeUri`, the layer's `ContentUri`, the template): a scan every half second costs
well under a millisecond of CPU per hundred files, and runs in a thread, off the event loop.
A burst of writes (an editor saving several files, a `git checkout`) is reported once, after the
folder has been quiet for one more interval.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable

SKIP_DIRS = {"__pycache__", "node_modules", ".git", ".venv", ".aws-sam", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
MAX_FILES = 20_000  # a CodeUri pointing at a huge tree: stop counting there rather than stall

Stamp = tuple[int, int]  # (mtime_ns, size)


def scan(roots: Iterable[Path]) -> dict[Path, Stamp]:
    """Every watched file under `roots` (a root may be a single file) with its modification stamp."""
    found: dict[Path, Stamp] = {}
    for root in roots:
        if root.is_file():
            st = root.stat()
            found[root] = (st.st_mtime_ns, st.st_size)
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
            for name in files:
                if name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                    continue
                path = Path(folder, name)
                try:
                    st = path.stat()
                except OSError:  # removed between listing and stat
                    continue
                found[path] = (st.st_mtime_ns, st.st_size)
                if len(found) >= MAX_FILES:
                    return found
    return found


def changed_paths(before: dict[Path, Stamp], after: dict[Path, Stamp]) -> set[Path]:
    """Files added, removed or modified between two scans."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


@dataclass
class CodeWatcher:
    """Polls `roots` every `interval_s`; calls `on_change` with the changed files once a burst of writes has settled."""

    roots: list[Path]
    on_change: Callable[[set[Path]], Awaitable[None]]
    interval_s: float = 0.5
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Take the first snapshot, then poll. Awaited before the port serves: a file saved the moment
        the gateway is ready must differ from the snapshot, not be part of it (the snapshot used to be
        taken by the polling task, which could run after such a save and miss it)."""
        known = await asyncio.to_thread(scan, self.roots)
        self._task = asyncio.create_task(self._run(known))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self, known: dict[Path, Stamp]) -> None:
        pending: set[Path] = set()
        while True:
            await asyncio.sleep(self.interval_s)
            now = await asyncio.to_thread(scan, self.roots)
            fresh = changed_paths(known, now)
            known = now
            if fresh:  # still being written: wait for a quiet interval
                pending |= fresh
                continue
            if pending:
                batch, pending = pending, set()
                await self.on_change(batch)
