"""The ids and request times the gateway stamps on events: AWS's shapes, drawn cheaply, and the per-second
`requestTime` cache rolling over exactly at each second."""

from __future__ import annotations

import calendar
import re
import time
import uuid

from parley_local.gateway import events, ids
from parley_local.gateway.events import clf_time

AWS_ID = re.compile(r"^[A-Za-z0-9]{15}=$")


def _clf_reference(epoch_ms: int) -> str:
    """requestTime computed the long way (strftime in the C locale's English month names)."""
    t = time.gmtime(epoch_ms // 1000)
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[t.tm_mon - 1]
    return time.strftime(f"%d/{month}/%Y:%H:%M:%S +0000", t)


def test_aws_ids_have_api_gateways_shape_and_do_not_repeat():
    drawn = [ids.aws_id() for _ in range(5000)]  # crosses several refills of the random buffer
    assert all(AWS_ID.match(i) for i in drawn)
    assert len(set(drawn)) == len(drawn)


def test_lambda_request_ids_are_canonical_version_4_uuids():
    drawn = [ids.uuid4_str() for _ in range(2000)]
    for text in drawn:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert len(set(drawn)) == len(drawn)
    assert {text[19] for text in drawn} == set("89ab")  # the variant keeps its two random bits


def test_random_hex_has_the_asked_length_and_varies():
    drawn = [ids.random_hex(24) for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", h) for h in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(ids.random_bytes(10_000)) == 10_000  # larger than one refill


def test_request_time_rolls_over_at_each_second_and_back():
    start = calendar.timegm((2024, 12, 31, 23, 59, 58)) * 1000
    seen = []
    for ms in range(start, start + 3000, 250):  # 23:59:58.000 ... 00:00:00.750, in order
        assert clf_time(ms) == _clf_reference(ms)
        seen.append(clf_time(ms))
    assert seen[0] == "31/Dec/2024:23:59:58 +0000" and seen[4] == "31/Dec/2024:23:59:59 +0000"
    assert seen[8] == "01/Jan/2025:00:00:00 +0000"
    assert clf_time(start + 999) == "31/Dec/2024:23:59:58 +0000"  # an earlier second after a later one
    assert clf_time(start + 1000) == "31/Dec/2024:23:59:59 +0000"
    assert clf_time(1731324924000) == "11/Nov/2024:11:35:24 +0000"


def test_request_time_matches_the_uncached_format_for_arbitrary_times():
    for ms in (0, 1, 999, 1000, 951782400000, 951868799999, 1731324924999, 4102444800000):  # incl. 29 Feb 2000
        events._clf_cache = (-1, "")
        fresh = clf_time(ms)
        assert fresh == _clf_reference(ms) == clf_time(ms)
