"""Room access: what a token's `rooms` claim grants, and the direct-message rule. No I/O.

A claim maps room patterns to actions: `{"case-42-*": ["read", "write"], "lobby": ["read"]}`.
The authorizer validates it once per connection (a malformed claim is a 401) and hands every
route a compact encoding through the authorizer context, so deciding an action costs no
DynamoDB read. Patterns that match a room add up; nothing subtracts.

Direct-message rooms (`dm:<a>:<b>`, the two user ids in sorting order) belong to their two
users whatever the claim or the `RoomAccess` mode says: read and write for them, nothing for
anyone else. Claims cannot open a DM to a third user, so a leaked pattern like `*` never
exposes a conversation between two other people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    READ = "read"  # join_room, get_history, get_participants, receiving the room's frames
    WRITE = "write"  # chat_message, typing, mark_read, react, editing/deleting one's own messages
    MODERATE = "moderate"  # deleting anyone's message


class RoomAccessMode(StrEnum):
    """What a token without a `rooms` claim may do (template parameter `RoomAccess`)."""

    OPEN = "open"  # read and write in every room, as before rooms claims existed
    TOKEN = "token"  # nothing: every room must be granted by the claim (DMs excepted)


# The authorizer's whole result must stay under API Gateway's 8 KB: 50 patterns of at most
# 65 characters encode to under 4 KB, leaving room for the policy and the other context keys.
MAX_PATTERNS = 50
ROOM_ID_CHARS = "A-Za-z0-9_.:-"
MAX_ROOM_ID_LENGTH = 64
_EXACT = re.compile(rf"[{ROOM_ID_CHARS}]{{1,{MAX_ROOM_ID_LENGTH}}}")
_PREFIX = re.compile(rf"[{ROOM_ID_CHARS}]{{0,{MAX_ROOM_ID_LENGTH - 1}}}\*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
DM_PREFIX = "dm:"
_CODES = {Action.READ: "r", Action.WRITE: "w", Action.MODERATE: "m"}
_ACTIONS_BY_CODE = {code: action for action, code in _CODES.items()}
NO_GRANTS = "none"  # the encoding of an empty claim: API Gateway context values should not be empty
DM_ACTIONS = frozenset({Action.READ, Action.WRITE})
NOTHING: frozenset[Action] = frozenset()


class ClaimError(ValueError):
    """The `rooms` claim is malformed: the connection is refused (401); the reason is for the log only."""


class DmRoomIdError(ValueError):
    """A room id that starts with `dm:` but is not `dm:<a>:<b>` with a < b: a `validation_error`."""


def check_pattern(pattern: object) -> str:
    """A valid pattern (an exact room id, a prefix ending in `*`, or `*`), else ClaimError."""
    if not isinstance(pattern, str):
        raise ClaimError("a room pattern must be a string")
    if _CONTROL.search(pattern):
        raise ClaimError("a room pattern may not contain control characters")
    if not (_EXACT.fullmatch(pattern) or _PREFIX.fullmatch(pattern)):
        raise ClaimError(
            f"room pattern {pattern[:70]!r} must be a room id (1-64 of {ROOM_ID_CHARS}), such a prefix ending in *, or *"
        )
    return pattern


def _check_actions(pattern: str, actions: object) -> frozenset[Action]:
    if not isinstance(actions, list) or len(actions) > len(Action):
        raise ClaimError(f"the actions of {pattern!r} must be a list of at most {len(Action)} of read, write, moderate")
    checked = []
    for action in actions:
        if not isinstance(action, str) or action not in Action.__members__.values():
            raise ClaimError(f"unknown action {str(action)[:20]!r} for {pattern!r}: use read, write or moderate")
        checked.append(Action(action))
    if len(set(checked)) != len(checked):
        raise ClaimError(f"the actions of {pattern!r} repeat")
    return frozenset(checked)


def encode_actions(actions: frozenset[Action]) -> str:
    """Actions as letters in a fixed order (`rw`), for the authorizer context and membership items."""
    return "".join(_CODES[action] for action in Action if action in actions)


def decode_actions(codes: str) -> frozenset[Action]:
    if not codes or any(code not in _ACTIONS_BY_CODE for code in codes):
        raise ClaimError(f"malformed actions {codes[:8]!r}")
    return frozenset(_ACTIONS_BY_CODE[code] for code in codes)


def pattern_matches(pattern: str, room_id: str) -> bool:
    if pattern.endswith("*"):
        return room_id.startswith(pattern[:-1])
    return pattern == room_id


@dataclass(frozen=True)
class Grants:
    """The rooms a connection may use and how, from its claim (or from the `RoomAccess` mode)."""

    rules: tuple[tuple[str, frozenset[Action]], ...]

    @classmethod
    def from_claim(cls, claim: Any) -> "Grants":
        """Validate a decoded `rooms` claim: an object of at most MAX_PATTERNS patterns to action lists."""
        if not isinstance(claim, dict):
            raise ClaimError("the rooms claim must be an object of room pattern to a list of actions")
        if len(claim) > MAX_PATTERNS:
            raise ClaimError(f"the rooms claim has {len(claim)} patterns; at most {MAX_PATTERNS} are allowed")
        rules = []
        for pattern, actions in claim.items():
            rules.append((check_pattern(pattern), _check_actions(pattern, actions)))
        return cls(tuple(sorted(rules)))

    @classmethod
    def for_mode(cls, mode: RoomAccessMode) -> "Grants":
        if mode is RoomAccessMode.OPEN:
            return cls((("*", frozenset({Action.READ, Action.WRITE})),))
        return cls(())

    def actions_on(self, room_id: str) -> frozenset[Action]:
        granted: set[Action] = set()
        for pattern, actions in self.rules:
            if pattern_matches(pattern, room_id):
                granted |= actions
        return frozenset(granted)

    def encode(self) -> str:
        """`pattern=rwm` entries joined by `,` (neither character can occur in a pattern)."""
        entries = [f"{pattern}={encode_actions(actions)}" for pattern, actions in self.rules if actions]
        return ",".join(entries) or NO_GRANTS

    @classmethod
    def decode(cls, text: str) -> "Grants":
        """The inverse of `encode`; ClaimError for anything `encode` cannot have written."""
        if text == NO_GRANTS:
            return cls(())
        rules = []
        for entry in text.split(","):
            pattern, separator, codes = entry.partition("=")
            if not separator:
                raise ClaimError(f"malformed rooms context entry {entry[:80]!r}")
            rules.append((check_pattern(pattern), decode_actions(codes)))
        if len(rules) > MAX_PATTERNS:
            raise ClaimError("too many rooms context entries")
        return cls(tuple(sorted(rules)))


def dm_room_id(user_a: str, user_b: str) -> str:
    first, second = sorted((user_a, user_b))
    return f"{DM_PREFIX}{first}:{second}"


def dm_participants(room_id: str) -> tuple[str, str] | None:
    """The two users of a DM room id, None for a room that is not a DM, DmRoomIdError for a bad `dm:` id."""
    if not room_id.startswith(DM_PREFIX):
        return None
    parts = room_id[len(DM_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        raise DmRoomIdError("a direct-message room id is dm:<userA>:<userB>; user ids containing ':' cannot have one")
    first, second = parts
    if not first < second:
        raise DmRoomIdError(f"a direct-message room id names two different users in sorting order: {dm_room_id(first, second)}")
    return first, second


def allowed_actions(grants: Grants, user_id: str, room_id: str) -> frozenset[Action]:
    """What `user_id`, holding `grants`, may do in `room_id`."""
    participants = dm_participants(room_id)
    if participants is not None:
        return DM_ACTIONS if user_id in participants else NOTHING
    return grants.actions_on(room_id)


def permits(grants: Grants, user_id: str, room_id: str, action: Action) -> bool:
    return action in allowed_actions(grants, user_id, room_id)
