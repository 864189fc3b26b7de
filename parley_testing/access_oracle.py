"""What a `rooms` claim allows, read literally from the rules (issue 13, docs/SECURITY.md "Room access").

Written apart from `parley.core.access` and more naively on purpose: property tests compare the two,
so a shortcut in the implementation shows up as a disagreement on some claim, user and room.
"""

from __future__ import annotations

ACTIONS = ["read", "write", "moderate"]


def oracle_allows(claim: dict[str, list[str]] | None, mode: str, user: str, room: str, action: str) -> bool:
    if room[:3] == "dm:":
        pieces = room.split(":")
        # exactly dm, a, b; both non-empty; a strictly before b
        assert len(pieces) == 3 and pieces[1] and pieces[2] and pieces[1] < pieces[2]
        return action in ("read", "write") and user in (pieces[1], pieces[2])
    if claim is None:
        return mode == "open" and action in ("read", "write")
    for pattern, actions in claim.items():
        if action not in actions:
            continue
        if pattern == "*" or pattern == room:
            return True
        if pattern[-1] == "*" and room[: len(pattern) - 1] == pattern[:-1]:
            return True
    return False
