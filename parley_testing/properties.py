"""The property tests themselves, built for a given number of examples: the domain suite runs them
in memory with many examples, the handler suite on the real functions with fewer.

Each factory returns a test function taking a `room` fixture of `(world, alice, bob)` from
`oracle.seed_room`; assign it to a `test_...` name in a test module.
"""

from __future__ import annotations

import json
from typing import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from .oracle import rejoin_lobby_if_left, run, run_lenient
from .strategies import (
    MALFORMED_EXAMPLES,
    SETTINGS,
    TYPED_EXAMPLES,
    malformed_frames,
    serializer,
    surrogates,
    typed_frames,
    with_examples,
)

Test = Callable[..., None]


def malformed_frames_get_exactly_one_error_and_change_nothing(max_examples: int) -> Test:
    @settings(SETTINGS, max_examples=max_examples)
    @given(raw=malformed_frames)
    @with_examples([{"raw": raw} for raw in MALFORMED_EXAMPLES])
    def test(room, raw):
        world, alice, bob = room
        run(world, alice, bob, raw)

    return test


def typed_frames_get_the_documented_reply_or_exactly_one_error(max_examples: int) -> Test:
    @settings(SETTINGS, max_examples=max_examples)
    @given(frame=typed_frames(), ascii_only=st.booleans(), spaced=st.booleans())
    @with_examples(TYPED_EXAMPLES)
    def test(room, frame, ascii_only, spaced):
        world, alice, bob = room
        rejoin_lobby_if_left(world, alice, bob)
        run(world, alice, bob, serializer(frame, ascii_only, spaced))

    return test


# ---- known gaps: text that is JSON-escaped but is not Unicode, and numbers JSON cannot carry ----


def lone_surrogates_are_rejected_and_never_echoed(max_examples: int) -> Test:
    @settings(SETTINGS, max_examples=max_examples)
    @given(
        where=st.sampled_from(["chat", "cmid", "echo", "type"]),
        prefix=st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=5),
        escape=surrogates,
    )
    @example(where="chat", prefix="hi ", escape="\\ud800")
    @example(where="echo", prefix="", escape="\\udfff")
    @example(where="cmid", prefix="", escape="\\udc00")
    def test(room, where, prefix, escape):
        world, alice, bob = room
        text = json.dumps(prefix)[1:-1] + escape
        raw = {
            "chat": '{"type":"chat_message","data":{"roomId":"lobby","message":"%s"}}',
            "cmid": '{"type":"chat_message","data":{"roomId":"lobby","message":"ok","clientMessageId":"%s"}}',
            "echo": '{"type":"message","data":{"message":"%s"}}',
            "type": '{"type":"%s"}',
        }[where] % text
        run_lenient(world, alice, bob, raw, must_reject=True, code="invalid_json")

    return test


def non_json_numbers_are_invalid_json(max_examples: int) -> Test:
    @settings(SETTINGS, max_examples=max_examples)
    @given(constant=st.sampled_from(["NaN", "Infinity", "-Infinity"]), place=st.sampled_from(["echo", "nested", "limit", "extra"]))
    @example(constant="NaN", place="echo")
    def test(room, constant, place):
        world, alice, bob = room
        raw = {
            "echo": '{"type":"message","data":{"message":%s}}',
            "nested": '{"type":"message","data":{"message":{"a":[1,%s]}}}',
            "limit": '{"type":"get_history","data":{"roomId":"lobby","limit":%s}}',
            "extra": '{"type":"ping","data":{"x":%s}}',
        }[place] % constant
        run_lenient(world, alice, bob, raw, must_reject=True, code="invalid_json")
        overflow = '{"type":"message","data":{"message":[1e400,-1e999]}}'
        run_lenient(world, alice, bob, overflow, must_reject=False)  # any outcome, as long as what is sent is JSON

    return test
