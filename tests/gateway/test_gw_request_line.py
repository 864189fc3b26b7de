"""An invocation request survives the trip to the environment unchanged, whichever encoder wrote it."""

import json
from pathlib import Path

import pytest

from parley_local.gateway.worker_main import read_request
from parley_local.gateway.environment import request_line

EVENTS = sorted((Path(__file__).resolve().parents[2] / "events").glob("*.json"))


def _request(event: object) -> dict[str, object]:
    return {"id": 7, "event": event, "request_id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "deadline_ms": 1_700_000_000_000,
            "trace_id": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0"}


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.stem)
def test_every_sample_event_reads_back_as_sent(path: Path) -> None:
    req = _request(json.loads(path.read_text()))
    line = request_line(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line: the worker reads up to the newline
    assert read_request(line) == req


def test_text_beyond_ascii_reads_back_as_sent() -> None:
    req = _request({"body": '{"type":"message","data":{"text":"héllo ✓ 🎉 \\u2028"}}', "headers": {"X-Name": "Zoë"}})
    assert read_request(request_line(req)) == req


def test_a_header_with_undecodable_bytes_reads_back_as_sent() -> None:
    # aiohttp decodes a header's bytes with surrogateescape: b"\xff" arrives as "\udcff"
    header = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    req = _request({"headers": {"X-Odd": header}, "multiValueHeaders": {"X-Odd": [header]}})
    line = request_line(req)
    assert read_request(line) == req
    assert "\n" not in line[:-1].decode("utf-8", "surrogatepass")


def test_numbers_and_nesting_read_back_as_sent() -> None:
    req = _request({"n": [0, -1, 2**53, 1.5, True, None], "deep": {"a": {"b": {"c": [{}]}}}})
    assert read_request(request_line(req)) == req


@pytest.mark.parametrize("repeated", [False, True], ids=["names-once", "a-name-repeated"])
def test_the_events_of_a_real_handshake_take_the_fast_encoder(repeated: bool) -> None:
    """aiohttp hands header names over as `istr`s, which orjson refuses as keys: the events must carry
    plain `str`s, or every handshake pays the standard library's encoder (profiled: it did)."""
    import orjson
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from parley_local.gateway.events import authorizer_event, aws_id, connect_event, disconnect_event, message_event
    from parley_local.gateway.handshake import connection_info

    pairs = [("Host", "127.0.0.1:3001"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k"), ("User-Agent", "ua")]
    if repeated:
        pairs.append(("X-Tag", "a"))
        pairs.append(("X-Tag", "b"))
    request = make_mocked_request("GET", "/local?token=t&x=1&x=2", headers=CIMultiDict(pairs), match_info={})
    info = connection_info(request, "abcdefghij", "local", 3001)
    for event in (authorizer_event(info, aws_id()), connect_event(info, aws_id()),
                  message_event(info, "ping", '{"type":"ping"}', aws_id(), aws_id()),
                  disconnect_event(info, aws_id(), 1000, "bye")):
        req = _request(event)
        assert orjson.loads(orjson.dumps(req)) == req  # raises TypeError on a key that is not exactly a str
        assert read_request(request_line(req)) == req
