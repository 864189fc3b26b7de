"""The code watcher: its snapshot is taken before `start()` returns, so no save after ready is missed;
folders watched from a redeploy on are snapshots, not changes."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from parley_local.gateway.code_watch import CodeWatcher, scan


@asynccontextmanager
async def watching(roots: list[Path], interval_s: float) -> AsyncIterator[tuple[CodeWatcher, asyncio.Queue[set[Path]]]]:
    """A started watcher of `roots` and the queue of what it reports; stopped on the way out."""
    reported: asyncio.Queue[set[Path]] = asyncio.Queue()

    async def on_change(paths: set[Path]) -> None:
        reported.put_nowait(paths)

    watcher = CodeWatcher(roots, on_change, interval_s=interval_s)
    await watcher.start()
    try:
        yield watcher, reported
    finally:
        watcher.stop()


async def test_a_save_right_after_start_is_reported(tmp_path: Path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")
    async with watching([tmp_path], 0.02) as (watcher, reported):
        template.write_text("Resources: [not, a, map\n")  # no loop turn between ready and the save
        assert await asyncio.wait_for(reported.get(), 5) == {template}


async def test_a_burst_of_saves_is_reported_once_it_settles(tmp_path: Path):
    files = [tmp_path / f"m{i}.py" for i in range(3)]
    for f in files:
        f.write_text("x = 0\n")
    async with watching([tmp_path], 0.05) as (watcher, reported):
        for f in files:
            f.write_text("x = 1  # edited\n")
        (tmp_path / "__pycache__").mkdir()
        (tmp_path / "__pycache__" / "m0.cpython-313.pyc").write_bytes(b"\0")  # ignored
        assert await asyncio.wait_for(reported.get(), 5) == set(files)
        await asyncio.sleep(0.3)
        assert reported.empty()  # one report for the burst


async def test_a_newly_watched_folder_is_a_snapshot_not_a_change_and_a_dropped_one_is_forgotten(tmp_path: Path):
    """A redeploy that moves a function to another CodeUri watches that folder from then on: its files
    exist already and are not news (reporting them would retire the function again and print a
    spurious "Reloaded" line), while an edit under a folder watched before and after still is."""
    kept, dropped, added = (tmp_path / name for name in ("kept", "dropped", "added"))
    for folder in (kept, dropped, added):
        folder.mkdir()
        (folder / "app.py").write_text("x = 0\n")
    async with watching([kept, dropped], 0.05) as (watcher, reported):
        (kept / "app.py").write_text("x = 1  # saved just before the redeploy took effect\n")
        await watcher.watch([kept, added])
        assert await asyncio.wait_for(reported.get(), 5) == {kept / "app.py"}
        await asyncio.sleep(0.5)
        assert reported.empty()  # nothing under `added` (already there) or `dropped` (no longer watched)
        (added / "app.py").write_text("x = 2  # edited after the redeploy\n")
        assert await asyncio.wait_for(reported.get(), 5) == {added / "app.py"}


async def test_a_failed_redeploy_is_reported_and_the_watcher_goes_on(tmp_path: Path):
    source = tmp_path / "app.py"
    source.write_text("x = 0\n")
    reported: asyncio.Queue[set[Path]] = asyncio.Queue()
    said: list[str] = []

    calls: list[set[Path]] = []

    async def on_change(paths: set[Path]) -> None:
        calls.append(paths)
        reported.put_nowait(paths)
        if len(calls) == 1:
            raise RuntimeError("the redeploy broke")

    watcher = CodeWatcher([tmp_path], on_change, interval_s=0.05, report=said.append)
    await watcher.start()
    try:
        # Each save changes the size: a same-size save in the timestamp tick of the snapshot (a few ms on
        # kernels without fine-grained timestamps) has the snapshot's stamp and would never be reported.
        source.write_text("x = 11\n")
        assert await asyncio.wait_for(reported.get(), 5) == {source}
        source.write_text("x = 222\n")
        assert await asyncio.wait_for(reported.get(), 5) == {source}  # still watching after the failure
        assert len(said) == 1 and "RuntimeError: the redeploy broke" in said[0] and "still watching" in said[0]
    finally:
        watcher.stop()



async def test_a_save_of_the_same_size_in_the_tick_of_the_snapshot_is_reported(tmp_path: Path):
    """Kernels without fine-grained file times stamp every write within one tick (a few ms) alike: a save that
    keeps the size, right after the snapshot, then has the snapshot's time and size. Setting the time back to
    the snapshot's makes that happen here whatever the kernel; the content still tells the change."""
    source = tmp_path / "app.py"
    source.write_text("x = 0\n")
    async with watching([tmp_path], 0.05) as (watcher, reported):
        snapshot = source.stat()
        source.write_text("x = 1\n")
        os.utime(source, ns=(snapshot.st_atime_ns, snapshot.st_mtime_ns))
        assert source.stat().st_size == snapshot.st_size
        assert await asyncio.wait_for(reported.get(), 5) == {source}
        await asyncio.sleep(0.3)
        assert reported.empty()  # reported once: the digest is of the new content from then on


def test_a_scan_lists_the_files_os_walk_would_and_skips_the_rest(tmp_path: Path):
    root = tmp_path / "fn"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "pkg" / "app.py").write_text("x = 1\n")
    (root / "pkg" / "__pycache__" / "app.cpython-313.pyc").write_bytes(b"\0")
    (root / "pkg" / "old.pyc").write_bytes(b"\0")
    (root / "pkg" / "notes.txt~").write_text("")
    (root / ".hidden" / "secret.py").write_text("")
    (root / ".env").write_text("")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.py").write_text("")
    (root / "linked_folder").symlink_to(outside, target_is_directory=True)  # not entered, as os.walk does not
    (root / "linked_file.py").symlink_to(outside / "elsewhere.py")  # a file: its target's stamp
    (root / "dangling.py").symlink_to(tmp_path / "missing.py")
    single = tmp_path / "template.yaml"
    single.write_text("Resources: {}\n")

    found = scan([root, single, tmp_path / "not-there"])
    assert sorted(found) == sorted(str(p) for p in (root / "pkg" / "app.py", root / "linked_file.py", single))
    assert found[str(root / "linked_file.py")][1] == 0 and found[str(root / "pkg" / "app.py")][1] == 6


def test_an_editors_auto_save_file_is_not_watched(tmp_path: Path):
    """Emacs writes `#app.py#` beside a file being edited every few hundred keystrokes or 30 s idle, without
    a save: watched, each would redeploy every function of the folder (a cold start each, a "Reloaded" line)
    for code the developer has not saved. Its lock file (`.#app.py`) is a dot file, skipped already."""
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "#app.py#").write_text("x = 2\n")
    assert sorted(scan([tmp_path])) == [str(tmp_path / "app.py")]
