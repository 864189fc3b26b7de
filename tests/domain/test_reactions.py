"""Reactions: which strings are one emoji, and how the per-message reaction state changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.core.reactions import (
    MAX_DISTINCT_EMOJI,
    MAX_EMOJI_BYTES,
    EmojiError,
    counts,
    room_for,
    validate_emoji,
    with_reaction,
)

GOOD = {
    "thumbs up": "👍",
    "heart with presentation selector": "❤️",
    "bare heart": "❤",
    "skin tone": "👍🏽",
    "family (ZWJ)": "👨‍👩‍👧‍👦",
    "kiss with two skin tones": "🧑🏻‍❤️‍💋‍🧑🏼",
    "flag": "🇫🇷",
    "subdivision flag (tags)": "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "keycap": "1️⃣",
    "keycap without selector": "#⃣",
    "trade mark": "™️",
    "left-right arrow": "↔️",
    "newer than this Python's Unicode data": "\U0001fae9",
}

BAD = {
    "empty": "",
    "letter": "a",
    "digit": "1",
    "word": "hello",
    "space": " ",
    "emoji and a space": "👍 ",
    "two emoji": "👍👍",
    "emoji then text": "👍lol",
    "lone regional indicator": "🇫",
    "three regional indicators": "🇫🇷🇫",
    "dangling joiner": "👍\u200d",
    "leading joiner": "\u200d👍",
    "joiner to a letter": "👍\u200da",
    "lone skin tone": "🏽",
    "lone selector": "\ufe0f",
    "tags without cancel": "🏴\U000e0067\U000e0062",
    "control character": "👍\x00",
    "newline": "👍\n",
    "4 KB string": "👍" * 1024,
    "HTML": "<b>",
    "CJK ideograph": "字",
    "Braille (could spell text)": "⠓\u200d⠑\u200d⠇",
    "CJK radical": "⺀",
}


@pytest.mark.parametrize("emoji", GOOD.values(), ids=GOOD.keys())
def test_one_emoji_is_accepted(emoji):
    assert validate_emoji(emoji) == emoji


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_anything_else_is_refused(value):
    with pytest.raises(EmojiError):
        validate_emoji(value)


@pytest.mark.parametrize("value", [None, 1, ["👍"], {"e": "👍"}])
def test_non_strings_are_refused(value):
    with pytest.raises(EmojiError):
        validate_emoji(value)


@given(st.text(min_size=1, max_size=40))
def test_whatever_is_accepted_is_bounded_and_has_no_letters_digits_or_spaces(text):
    try:
        validate_emoji(text)
    except EmojiError:
        return
    assert len(text.encode("utf-8")) <= MAX_EMOJI_BYTES
    assert not any(ch.isalpha() or ch.isspace() or ch in "\x00\n<>&\"'" for ch in text)
    assert not any(ch.isdigit() for ch in text) or text[-1] == "\u20e3"


# ---- reaction state --------------------------------------------------------------------------
reactions = st.dictionaries(st.sampled_from(["👍", "❤️", "🎉", "😂"]), st.frozensets(st.sampled_from(["a", "b", "c"])))
emojis = st.sampled_from(["👍", "❤️", "🎉", "😂"])
users = st.sampled_from(["a", "b", "c"])


@given(state=reactions, user=users, emoji=emojis, remove=st.booleans())
def test_a_user_counts_at_most_once_per_emoji_and_repeats_change_nothing(state, user, emoji, remove):
    once = with_reaction(state, user, emoji, remove=remove)
    assert with_reaction(once, user, emoji, remove=remove) == once
    assert (user in once.get(emoji, frozenset())) is (not remove)
    before, after = counts(state), counts(once)
    # Only this emoji's count moves, and by at most one.
    assert {k: v for k, v in before.items() if k != emoji} == {k: v for k, v in after.items() if k != emoji}
    assert abs(after.get(emoji, 0) - before.get(emoji, 0)) <= 1


def test_counts_leave_out_emoji_nobody_uses_and_list_the_most_used_first():
    state = {"🎉": frozenset({"a"}), "👍": frozenset({"a", "b"}), "❤️": frozenset()}
    assert list(counts(state).items()) == [("👍", 2), ("🎉", 1)]


def test_the_distinct_emoji_per_message_are_bounded():
    state = {chr(0x1F600 + n): frozenset({"a"}) for n in range(MAX_DISTINCT_EMOJI)}
    assert not room_for(state, "🎉")
    assert room_for(state, chr(0x1F600))  # an emoji already there can always gain users
    assert room_for(with_reaction(state, "a", chr(0x1F600), remove=True), "🎉")
