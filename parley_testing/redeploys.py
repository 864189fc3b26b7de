"""Saving code or a template under a running gateway, and reading what its console said about it:
shared by the redeploy tests (one socket at a time, streams, and under load)."""

from __future__ import annotations

from pathlib import Path

from .gateway_thread import RunningGateway


def lines_with(g: RunningGateway, text: str) -> list[str]:
    """The console lines holding `text` so far (a copy: the gateway's thread appends while we read)."""
    return [line for line in list(g.console.lines) if text in line]


def edit(path: Path, old: str, new: str) -> None:
    """Save `path` with `old` replaced by `new`; `old` must be there (an edit that matched nothing would
    change nothing, and a test of a redeploy would pass without one)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
