"""The ids the gateway stamps on events and invocations: AWS's shapes, drawn cheaply."""

from __future__ import annotations

import re
import uuid

from parley_local.gateway import ids

AWS_ID = re.compile(r"^[A-Za-z0-9]{15}=$")


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


def test_random_hex_has_the_asked_length_and_varies():
    drawn = [ids.random_hex(24) for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", h) for h in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(ids.random_bytes(10_000)) == 10_000  # larger than one refill
