"""Reactions: what counts as an emoji, and the per-message reaction state. No I/O.

A reaction is stored as the set of users per emoji on the message itself, so "at most one of
each emoji per user" is a set's nature and adding twice (a retry) changes nothing. The number
of distinct emoji per message is bounded because every reaction rewrites the message item and
every history page carries the counts.

`emoji` is one emoji grapheme cluster, checked structurally without a Unicode-segmentation
dependency: a pictographic code point with optional presentation selector and skin tone, a
flag (two regional indicators, or a black flag with a tag sequence), or a keycap, possibly
joined by ZERO WIDTH JOINERs into one sequence. Letters, digits, spaces and punctuation are
refused, so the field cannot carry arbitrary text to every member of a room.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

MAX_EMOJI_BYTES = 64  # UTF-8; the longest standard sequences (a kiss with two skin tones) take 35
MAX_EMOJI_CODE_POINTS = 16
MAX_DISTINCT_EMOJI = 20

_ZWJ = "\u200d"
_PRESENTATION = {"\ufe0f", "\ufe0e"}
_KEYCAP = "\u20e3"
_KEYCAP_BASES = set("0123456789#*")
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
_TAGS = range(0xE0020, 0xE007F)
_CANCEL_TAG = 0xE007F
# The emoji plane is reserved for pictographs, including ones newer than this Python's Unicode data.
_PICTOGRAPHIC_PLANE = range(0x1F000, 0x1FB00)
# Outside that plane, emoji come from a few symbol blocks (arrows, technical, geometric shapes,
# miscellaneous symbols, dingbats) and a handful of single code points. Only symbols from these
# count: other symbol blocks (Braille patterns, CJK radicals) could spell text.
_SYMBOL_BLOCKS = (range(0x2190, 0x2200), range(0x2300, 0x2400), range(0x24C2, 0x24C3), range(0x25A0, 0x2600),
                  range(0x2600, 0x27C0), range(0x2900, 0x2980), range(0x2B00, 0x2C00))
_SINGLE_EMOJI = {0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D, 0x3297, 0x3299}


class EmojiError(ValueError):
    """`emoji` is not one emoji: a `validation_error` on field `emoji`."""


def _is_pictographic(char: str) -> bool:
    code = ord(char)
    if code in _SKIN_TONES or code in _REGIONAL_INDICATORS:
        return False
    if code in _PICTOGRAPHIC_PLANE or code in _SINGLE_EMOJI:
        return True
    # Symbols only: the blocks also hold math operators that are not emoji but cannot spell words.
    return any(code in block for block in _SYMBOL_BLOCKS) and unicodedata.category(char) in ("So", "Sm")


def _element_end(text: str, start: int) -> int:
    """The index after the one emoji element starting at `start`; EmojiError if none starts there."""
    end = len(text)
    char = text[start]
    if ord(char) in _REGIONAL_INDICATORS:
        if start + 1 < end and ord(text[start + 1]) in _REGIONAL_INDICATORS:
            return start + 2
        raise EmojiError("a flag is two regional indicator letters")
    if char in _KEYCAP_BASES:
        index = start + 1
        if index < end and text[index] == "\ufe0f":
            index += 1
        if index < end and text[index] == _KEYCAP:
            return index + 1
        raise EmojiError("must be an emoji, not a letter, digit or punctuation")
    if not _is_pictographic(char):
        raise EmojiError("must be an emoji, not a letter, digit, space or punctuation")
    index = start + 1
    for _ in range(2):  # a presentation selector and a skin tone, in either order
        if index < end and (text[index] in _PRESENTATION or ord(text[index]) in _SKIN_TONES):
            index += 1
    if index < end and ord(text[index]) in _TAGS:
        while index < end and ord(text[index]) in _TAGS:
            index += 1
        if index >= end or ord(text[index]) != _CANCEL_TAG:
            raise EmojiError("a tag sequence must end with CANCEL TAG")
        index += 1
    return index


def validate_emoji(value: object) -> str:
    """`value` if it is exactly one emoji grapheme cluster within the size bounds."""
    if not isinstance(value, str) or not value:
        raise EmojiError("must be one emoji, such as 👍")
    if len(value) > MAX_EMOJI_CODE_POINTS or len(value.encode("utf-8", "surrogatepass")) > MAX_EMOJI_BYTES:
        raise EmojiError(f"must be one emoji (at most {MAX_EMOJI_CODE_POINTS} code points, {MAX_EMOJI_BYTES} bytes)")
    index = _element_end(value, 0)
    while index < len(value):
        if value[index] != _ZWJ or index + 1 == len(value):
            raise EmojiError("must be one emoji, not several or text")
        index = _element_end(value, index + 1)
    return value


Reactors = Mapping[str, frozenset[str] | set[str]]
"""Emoji -> the users who reacted with it, as stored on a message."""


def counts(reactors: Reactors) -> dict[str, int]:
    """Emoji -> number of users, most used first (ties by emoji), emoji nobody uses left out."""
    present = [(emoji, len(users)) for emoji, users in reactors.items() if users]
    return dict(sorted(present, key=lambda item: (-item[1], item[0])))


def room_for(reactors: Reactors, emoji: str) -> bool:
    """Whether `emoji` may be added: it is already on the message, or the distinct bound has room."""
    in_use = {key for key, users in reactors.items() if users}
    return emoji in in_use or len(in_use) < MAX_DISTINCT_EMOJI


def with_reaction(reactors: Reactors, user_id: str, emoji: str, *, remove: bool) -> dict[str, frozenset[str]]:
    """The reaction state after one add or remove (a repeat leaves it as it was)."""
    updated = {key: frozenset(users) for key, users in reactors.items() if users}
    users = updated.get(emoji, frozenset())
    users = users - {user_id} if remove else users | {user_id}
    if users:
        updated[emoji] = users
    else:
        updated.pop(emoji, None)
    return updated
