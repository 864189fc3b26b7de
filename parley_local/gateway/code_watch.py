"""Notice when a function's code, a layer or the template changes on disk, so the gateway can redeploy.

Why polling: it needs no dependency and no OS-specific API, and the folders are small (a
function's `CodeUri`, the layer's `ContentUri`, the template): a scan every half second costs
well under a millisecond of CPU per hundred files, and runs in a thread, off the event loop.
A burst of writes (an editor saving several files, a `git checkout`) is reported once, after the
folder has been quiet for one more interval. A redeploy may change what is watched (`watch`): a
folder watched from then on is a snapshot, not a folder of new files, and one no longer watched
is forgotten, not deleted; otherwise the next look would retire the functions again.

A file's stamp is its modification time and size, and while that time is recent, a digest of its
content too: many kernels keep file times in coarse ticks (a few ms), so a save of the same size
in the tick of the scan before it leaves time and size unchanged, and would never be reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable

SKIP_DIRS = {"__pycache__", "node_modules", ".git", ".venv", ".aws-sam", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
MAX_FILES = 20_000  # a CodeUri pointing at a huge tree: stop counting there rather than stall

# A file modified this close to a scan may share its timestamp tick with a later save: its content counts
# too. Far above any kernel's tick, and four looks at the default interval, so a late scan still compares it.
RACY_NS = 2_000_000_000
RACY_MAX_BYTES = 8 * 1024 * 1024  # larger files are not read: their time and size alone tell

Stamp = tuple[int, int, bytes | None]  # (mtime_ns, size, content digest while the mtime is racy)


Snapshot = dict[str, Stamp]  # file path (as the scan built it, from its root's text) -> stamp


def _stamp(path: str, st: os.stat_result, scanned_ns: int) -> Stamp:
    digest = None
    if st.st_mtime_ns >= scanned_ns - RACY_NS and st.st_size <= RACY_MAX_BYTES:
        try:
            with open(path, "rb") as f:
                digest = hashlib.blake2b(f.read(), digest_size=16).digest()
        except OSError:  # gone, or being replaced: its time and size still count
            pass
    return (st.st_mtime_ns, st.st_size, digest)


def scan(roots: Iterable[Path]) -> Snapshot:
    """Every watched file under `roots` (a root may be a single file) with its modification stamp.

    Paths are text, listed with `os.scandir`: this runs twice a second for as long as `parley dev`
    does, and a `Path` and its `stat()` per file were most of an idle gateway's CPU after the stream
    polls. Symlinked folders are not entered, as `os.walk` does not enter them."""
    found: Snapshot = {}
    scanned_ns = time.time_ns()
    for root in map(str, roots):
        try:
            st = os.stat(root)  # once: a file root an editor replaces may be gone between two calls
        except OSError:  # not there now (being replaced, or deleted): nothing to record
            continue
        if stat.S_ISREG(st.st_mode):
            found[root] = _stamp(root, st, scanned_ns)
            continue
        folders = [root]
        while folders:
            try:
                entries = list(os.scandir(folders.pop()))
            except OSError:  # removed, or not readable: as os.walk, skip it
                continue
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        if name not in SKIP_DIRS and not entry.is_symlink():
                            folders.append(entry.path)
                        continue
                    if name.endswith(SKIP_SUFFIXES) or (name.startswith("#") and name.endswith("#")):  # Emacs' auto-save
                        continue
                    st = entry.stat()
                except OSError:  # removed between listing and stat
                    continue
                found[entry.path] = _stamp(entry.path, st, scanned_ns)
                if len(found) >= MAX_FILES:
                    return found
    return found


def changed_paths(before: Snapshot, after: Snapshot) -> set[Path]:
    """Files added, removed or modified between two scans."""
    return {Path(p) for p in before.keys() | after.keys() if not _same(before.get(p), after.get(p))}


def _same(before: Stamp | None, after: Stamp | None) -> bool:
    """Time and size unchanged, and the content too where both scans read it (a stamp whose time
    is no longer recent has no digest: its time and size then decide, as they do for any old file)."""
    if before is None or after is None:
        return before is after
    return before[:2] == after[:2] and (before[2] is None or after[2] is None or before[2] == after[2])


def is_under(path: Path | str, roots: Iterable[Path | str]) -> bool:
    """Whether `path` is one of `roots` (a file root) or inside one of them. By text: a scan's paths
    start with their root's text, and a changed file's `Path` prints the same way."""
    text = str(path)
    return any(text == root or text.startswith(root.rstrip(os.sep) + os.sep) for root in map(str, roots))


def rebased(known: Snapshot, old_roots: list[Path], new_roots: list[Path], new_snapshot: Snapshot) -> Snapshot:
    """What the next scan of `new_roots` is compared with: the last scan's stamps for files watched
    before and after (so a change not yet seen is still reported), the snapshot's for files under no
    old root (they are there, not new), and nothing for files no longer watched."""
    old, new = [str(r) for r in old_roots], [str(r) for r in new_roots]
    return ({p: stamp for p, stamp in known.items() if is_under(p, new)}
            | {p: stamp for p, stamp in new_snapshot.items() if not is_under(p, old)})


@dataclass
class CodeWatcher:
    """Polls `roots` every `interval_s`; calls `on_change` with the changed files once a burst of writes has settled.

    `report` gets one line when `on_change` fails; the watcher goes on (a watcher that
    died silently would leave the developer editing code that is never redeployed)."""

    roots: list[Path]
    on_change: Callable[[set[Path]], Awaitable[None]]
    interval_s: float = 0.5
    report: Callable[[str], None] = print
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _rebase: tuple[list[Path], Snapshot] | None = field(default=None, init=False)  # from `watch`, for `_run`

    async def start(self) -> None:
        """Take the first snapshot, then poll. Awaited before the port serves: a file saved the moment
        the gateway is ready must differ from the snapshot, not be part of it (the snapshot used to be
        taken by the polling task, which could run after such a save and miss it)."""
        roots = list(self.roots)
        known = await asyncio.to_thread(scan, roots)
        self._rebase = None
        self._task = asyncio.create_task(self._run(roots, known))

    async def watch(self, roots: list[Path]) -> None:
        """Watch `roots` from now on (a redeploy's folders): their files as they are now are the snapshot
        the next look compares with; changes under folders watched before and after are still reported."""
        snapshot = await asyncio.to_thread(scan, roots)
        self.roots, self._rebase = list(roots), (list(roots), snapshot)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self, roots: list[Path], known: Snapshot) -> None:
        """`roots` are the folders `known` was scanned from; `watch` hands over new ones between two looks."""
        pending: set[Path] = set()
        while True:
            await asyncio.sleep(self.interval_s)
            if self._rebase is not None:
                (new_roots, snapshot), self._rebase = self._rebase, None
                known, roots = rebased(known, roots, new_roots, snapshot), new_roots
            now = await asyncio.to_thread(scan, roots)
            fresh = changed_paths(known, now)
            known = now
            if fresh:  # still being written: wait for a quiet interval
                pending |= fresh
                continue
            if pending:
                batch, pending = pending, set()
                try:
                    await self.on_change(batch)
                except Exception as error:  # noqa: BLE001 - one failed redeploy must not end the watching
                    self.report(f"Redeploying after {len(batch)} changed file(s) failed ({type(error).__name__}: {error}); "
                                "still watching: save again to retry")
