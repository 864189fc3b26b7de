"""The gateway's listening socket: a burst of connections queued at once is served in full, plain and TLS alike.

Why: `TlsOrPlainSite` takes every connection already queued behind the one it was woken for in
the same turn (a handshake storm costs one wake-up); none may be dropped or left unserved, and
the TLS side of the same port must keep working. A process out of file descriptors pauses accepting
and then serves again; a client slow to send its first byte is served all the same.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from aiohttp import web

from parley_local.gateway.local_tls import ACCEPT_PAUSE_S, LocalTls, TlsOrPlainSite


async def _get(port: int, tls: ssl.SSLContext | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    body = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return body


async def _hello_site() -> tuple[web.AppRunner, TlsOrPlainSite, int, LocalTls]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi " + request.scheme)

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    tls = LocalTls.create(["127.0.0.1"])
    site = TlsOrPlainSite(runner, sock, tls.server_context())
    await site.start()
    return runner, site, sock.getsockname()[1], tls


async def test_a_burst_of_plain_connections_and_a_tls_one_are_all_served():
    runner, _site, port, tls = await _hello_site()
    try:
        # Queue 80 connections before the site's loop turn comes: they are accepted from the backlog together.
        raw = []
        for _ in range(80):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            raw.append(s)
        for s in raw:
            s.setblocking(True)
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        loop = asyncio.get_running_loop()

        def read_all(s: socket.socket) -> bytes:
            s.settimeout(10)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            s.close()
            return b"".join(chunks)

        bodies = await asyncio.gather(*(loop.run_in_executor(None, read_all, s) for s in raw))
        assert all(b.startswith(b"HTTP/1.1 200") and b.endswith(b"hi http") for b in bodies), bodies[:3]
        client_tls = ssl.create_default_context(cafile=str(tls.ca_bundle))
        assert (await _get(port, client_tls)).endswith(b"hi https")
        assert (await _get(port)).endswith(b"hi http")
    finally:
        await runner.cleanup()
        tls.remove()


class _OutOfFdsOnce:
    """The site's listening socket, whose first accept fails as a process out of file descriptors does."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.failures = 0

    def accept(self) -> tuple[socket.socket, object]:
        if not self.failures:
            self.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self._sock.accept()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


async def test_out_of_file_descriptors_pauses_accepting_then_serves_again():
    """EMFILE on accept: reported, a pause, then the waiting client is served (the site never stops for good)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    runner, site, port, tls = await _hello_site()
    failing = _OutOfFdsOnce(site._sock)
    site._sock = failing  # type: ignore[assignment]
    try:
        started = loop.time()
        assert (await asyncio.wait_for(_get(port), 10)).endswith(b"hi http")
        assert failing.failures == 1
        assert loop.time() - started >= ACCEPT_PAUSE_S * 0.9  # it waited out the pause, no busy loop
        assert [str(c["exception"]) for c in reported] == ["[Errno 24] Too many open files"]
    finally:
        loop.set_exception_handler(None)
        await runner.cleanup()
        tls.remove()


async def test_a_client_slow_to_send_its_first_byte_is_served():
    """Accepting waits for a client's first bytes (TCP_DEFER_ACCEPT on Linux); one that sends late is served all the same."""
    runner, _site, port, tls = await _hello_site()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.5)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"hi http")
        writer.close()
    finally:
        await runner.cleanup()
        tls.remove()
