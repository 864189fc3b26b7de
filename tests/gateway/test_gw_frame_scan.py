"""`FrameLimiter.scan`, the per-chunk check of API Gateway's 32 KB frame limit, against a whole-stream
reference parser: for any split of a byte stream into chunks it must report the oversized data frame in
the chunk where that frame's header completes, at the frame's offset in it (0 when the header began in an
earlier chunk), and nothing before."""

from __future__ import annotations

import random

import pytest

from parley_local.gateway.ws_limits import FrameLimiter

LIMIT = 1000


def _frame(rng: random.Random, length: int, data: bool) -> bytes:
    opcode = rng.choice((0x0, 0x1, 0x2)) if data else rng.choice((0x8, 0x9, 0xA))
    masked = rng.random() < 0.7
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([(0x80 if masked else 0) | length])
    elif length < 65536:
        head += bytes([(0x80 if masked else 0) | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([(0x80 if masked else 0) | 127]) + length.to_bytes(8, "big")
    if masked:
        head += rng.randbytes(4)
    return head + bytes(length)


def _stream(rng: random.Random) -> tuple[bytes, int | None, int | None]:
    """Frames of every header form; returns (bytes, start of the first oversized data frame, end of its header)."""
    out, bad_at, bad_header_end = b"", None, None
    for _ in range(rng.randint(1, 12)):
        length = rng.choice((0, 1, 5, 125, 126, 127, 200, LIMIT, LIMIT + 1, 5000, 65535, 65536, 70000))
        data = rng.random() < 0.8
        if not data:
            length = min(length, 125)  # control frames are small
        frame = _frame(rng, length, data)
        if data and length > LIMIT and bad_at is None:
            bad_at = len(out)
            bad_header_end = len(out) + len(frame) - length
        out += frame
    return out, bad_at, bad_header_end


def _chunks(rng: random.Random, data: bytes) -> list[tuple[int, bytes]]:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(0, 8)))) if len(data) > 1 else []
    if rng.random() < 0.3:  # byte-by-byte around the start: headers split at every position
        cuts = sorted(set(cuts) | set(range(1, min(len(data), 20))))
    bounds = [0, *cuts, len(data)]
    return [(a, data[a:b]) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("seed", range(300))
def test_scan_finds_the_oversized_frame_in_any_split(seed: int):
    rng = random.Random(seed)
    stream, bad_at, bad_header_end = _stream(rng)
    limiter = FrameLimiter(inner=None, queue=None, limit=LIMIT)
    for start, chunk in _chunks(rng, stream):
        found = limiter.scan(chunk)
        if bad_at is not None and start < bad_header_end <= start + len(chunk):
            assert found == max(0, bad_at - start)
            return
        assert found == -1
    assert bad_at is None


def test_frames_at_the_limit_and_control_frames_pass():
    rng = random.Random(1)
    stream = b"".join(_frame(rng, n, True) for n in (0, 125, 126, LIMIT)) + _frame(rng, 125, False)
    assert FrameLimiter(inner=None, queue=None, limit=LIMIT).scan(stream) == -1
