"""The random ids API Gateway and Lambda hand out: connection/request ids, Lambda request ids, trace ids.

Why a module of its own: every invocation needs several (the event's request and message ids,
Lambda's request id, the X-Ray trace header), and `uuid.uuid4()` plus one `os.urandom` call per
id cost ~10 µs of the gateway's CPU per invocation (profiled; a ping's own overhead is ~200 µs).
The randomness is the same kernel CSPRNG, read a few KiB at a time, so ids stay unpredictable
(a connection id is what `@connections` addresses) at a fraction of the cost. The gateway never
forks a Python child that could inherit the unused bytes.
"""

from __future__ import annotations

import base64
import collections
import os

_REFILL_BYTES = 4096


_slices: dict[int, collections.deque[bytes]] = {}  # slice length -> unused slices of one urandom read


def random_bytes(n: int) -> bytes:
    """`n` bytes from the kernel's CSPRNG, never handed out twice.

    One `os.urandom` read is cut into slices of `n` bytes, queued per length. `popleft` and
    `extend` are single operations under the GIL, so gateways in several threads of one process
    (the tests run them so) can draw at once without a lock (which would double the cost)."""
    queue = _slices.get(n)
    if queue is None:
        queue = _slices.setdefault(n, collections.deque())
    try:
        return queue.popleft()
    except IndexError:
        block = os.urandom(max(_REFILL_BYTES, n) // n * n)
        queue.extend([block[i : i + n] for i in range(n, len(block), n)])
        return block[:n]


def aws_id() -> str:
    """An id shaped like API Gateway's connection/request/message ids: 16 base64 chars ending in `=`.

    11 random bytes give 15 characters and one `=`; ids with `+` or `/` are
    redrawn so that they need no escaping in paths or logs.
    """
    while True:
        value = base64.b64encode(random_bytes(11)).decode("ascii")
        if "+" not in value and "/" not in value:
            return value


_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}  # RFC 4122 variant bits over a random digit


def uuid4_str() -> str:
    """A random (version 4) UUID in its canonical text form, as Lambda's request ids are; what
    `str(uuid.uuid4())` returns, without building a `UUID` object: the version and variant digits are
    set in the hex text (no bytearray and bit operations; ~1 µs less per invocation)."""
    h = random_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"


def random_hex(chars: int) -> str:
    """`chars` random lowercase hex digits (`chars` even), as X-Ray trace and segment ids use."""
    return random_bytes(chars // 2).hex()
