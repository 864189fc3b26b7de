"""A frame's strings must be valid Unicode: a lone surrogate is refused however it arrives, and a frame
without one is not encoded a second time to find that out (`protocol._check_unicode`)."""

from __future__ import annotations

import json

import pytest

from parley.core import protocol as p
from parley.core.protocol import ErrorCode, ProtocolError


def _refused(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        p.parse_envelope(text)
    return caught.value


@pytest.mark.parametrize("text", [
    '{"type":"message","data":{"message":"\\ud800"}}',  # an escape, lower case
    '{"type":"message","data":{"message":"ok \\uDFFF"}}',  # upper case
    '{"type":"message","data":{"message":"\\ud83d then no low half"}}',
    '{"type":"message","data":{"\\udc00":"in a key"}}',
    '{"type":"message","data":{"message":"é \ud800"}}',  # the text itself holds one (no escape)
    '{"type":"message","data":{"message":"\ud800"}}',
])
def test_a_lone_surrogate_is_invalid_json(text):
    error = _refused(text)
    assert error.code == ErrorCode.INVALID_JSON and "lone surrogate" in str(error)


@pytest.mark.parametrize("text, message", [
    ('{"type":"message","data":{"message":"\\ud83d\\ude00"}}', "😀"),  # a pair is one character
    ('{"type":"message","data":{"message":"\\\\ud800"}}', "\\ud800"),  # an escaped backslash, then text
    ('{"type":"message","data":{"message":"héllo 😀"}}', "héllo 😀"),  # as browsers send it
    (json.dumps({"type": "message", "data": {"message": "héllo 😀"}}), "héllo 😀"),  # as Python sends it
])
def test_valid_text_is_read_as_written(text, message):
    assert p.parse_envelope(text)["data"]["message"] == message


def test_a_lone_surrogate_inside_a_list_is_invalid_json():
    error = _refused('{"type":"message","data":{"message":"ok","tags":[1,{"k":["\\ud800"]}]}}')
    assert error.code == ErrorCode.INVALID_JSON
