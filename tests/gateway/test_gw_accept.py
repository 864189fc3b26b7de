"""The gateway's listening socket: a burst of connections queued at once is served in full, plain and TLS alike.

Why: `TlsOrPlainSite` takes every connection already queued behind the one it was woken for in
the same turn (a handshake storm costs one wake-up); none may be dropped or left unserved, and
the TLS side of the same port must keep working.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from aiohttp import web

from parley_local.gateway.local_tls import LocalTls, TlsOrPlainSite


async def _get(port: int, tls: ssl.SSLContext | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    body = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return body


async def test_a_burst_of_plain_connections_and_a_tls_one_are_all_served():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi " + request.scheme)

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tls = LocalTls.create(["127.0.0.1"])
    site = TlsOrPlainSite(runner, sock, tls.server_context())
    await site.start()
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
