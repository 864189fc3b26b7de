"""The property tests of tests/domain through the real Lambda functions on moto. What they add is
the wiring (Powertools event parsing, route response encoding, DynamoDB's conditional writes and
pagination as moto implements them), so they run fewer examples than the domain suite."""

from __future__ import annotations

import pytest

from parley_testing import properties
from parley_testing.oracle import seed_room


@pytest.fixture
def room(world):
    return (world, *seed_room(world))


test_malformed_frames_get_exactly_one_error_and_change_nothing = properties.malformed_frames_get_exactly_one_error_and_change_nothing(100)
test_typed_frames_get_the_documented_reply_or_exactly_one_error = properties.typed_frames_get_the_documented_reply_or_exactly_one_error(200)
test_lone_surrogates_are_rejected_and_never_echoed = properties.lone_surrogates_are_rejected_and_never_echoed(20)
test_non_json_numbers_are_invalid_json = properties.non_json_numbers_are_invalid_json(15)
