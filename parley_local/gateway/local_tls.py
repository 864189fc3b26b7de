"""TLS for the local gateway, so `https://{domainName}/{stage}` from an event reaches `@connections`.

Why: AWS's own examples build the management client with
`endpoint_url=f"https://{event['requestContext']['domainName']}/{stage}"`, which ignores
`AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI`. For that code to run unchanged, the gateway's one
port also speaks TLS: `TlsOrPlainSite` looks at the first byte of each connection (0x16 opens
a TLS handshake; HTTP and WebSocket upgrades start with a letter) and serves it with or
without TLS. The certificate is self-signed, made at start for the local host names, and
the function processes trust it through `AWS_CA_BUNDLE`: a bundle of that certificate plus
the CAs botocore trusts anyway, so calls to real AWS endpoints still verify.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import ipaddress
import shutil
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LocalTls", "TlsOrPlainSite"]

TLS_HANDSHAKE_BYTE = 0x16
FIRST_BYTE_TIMEOUT_S = 10.0
ACCEPT_PAUSE_S = 1.0  # how long the site stops accepting when the process is out of file descriptors
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
CERT_VALIDITY = datetime.timedelta(days=7)


@dataclass
class LocalTls:
    """A throw-away certificate for the gateway's host names, and the files that carry it."""

    directory: Path
    cert_file: Path
    key_file: Path
    ca_bundle: Path

    @classmethod
    def create(cls, hosts: list[str]) -> "LocalTls":
        directory = Path(tempfile.mkdtemp(prefix="parley-tls-"))
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parley dev local gateway")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_file, key_file, bundle = directory / "cert.pem", directory / "key.pem", directory / "ca-bundle.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
        ))
        key_file.chmod(0o600)
        bundle.write_bytes(cert_pem + b"\n" + _default_ca_bundle())
        return cls(directory, cert_file, key_file, bundle)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _default_ca_bundle() -> bytes:
    """The CA file botocore verifies with when AWS_CA_BUNDLE is unset (certifi's, or its own)."""
    try:
        from botocore.httpsession import where

        return Path(where()).read_bytes()
    except (ImportError, OSError):
        return b""


class _ListeningSocket:
    """What BaseSite.stop() needs of `_server`: close() (and wait_closed() for good measure)."""

    def __init__(self, site: "TlsOrPlainSite"):
        self._site = site

    def close(self) -> None:
        self._site.close()

    async def wait_closed(self) -> None:
        return None


class TlsOrPlainSite(web.BaseSite):
    """An aiohttp site on a bound socket that serves TLS and plain connections on the same port."""

    __slots__ = ("_sock", "_accepting", "_pending", "_resume")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, ssl_context: ssl.SSLContext):
        super().__init__(runner, ssl_context=ssl_context)
        self._sock = sock
        self._accepting: asyncio.AbstractEventLoop | None = None  # the loop watching the socket, while it does
        self._pending: set[asyncio.Task[None]] = set()
        self._resume: asyncio.TimerHandle | None = None  # accepting again after running out of file descriptors

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http(s)://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        if hasattr(socket, "TCP_DEFER_ACCEPT"):  # Linux: accept once the client's first bytes are in (see `_serve`)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(FIRST_BYTE_TIMEOUT_S))
        self._sock.listen(self._backlog)
        self._sock.setblocking(False)
        self._watch(asyncio.get_running_loop())
        self._server = _ListeningSocket(self)  # type: ignore[assignment]

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._resume = None
        self._accepting = loop
        loop.add_reader(self._sock.fileno(), self._accept_queued, loop)

    def _unwatch(self) -> None:
        if self._accepting is not None:
            self._accepting.remove_reader(self._sock.fileno())
            self._accepting = None

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._sock.fileno() >= 0:
            self._unwatch()
        for task in list(self._pending):
            task.cancel()
        self._sock.close()

    def _accept_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """The listening socket is readable: accept every connection queued (up to the backlog) in this turn,
        each served at once, as asyncio's own servers do.

        Why a reader that stays registered, not `sock_accept` in a loop: each `sock_accept` registered the
        socket with epoll, made a future and unregistered it again, and woke a task a turn later; in a
        handshake storm most wake-ups find one or two connections, so that was paid nearly per connection.
        Out of file descriptors (or buffers), the site stops accepting for a second and reports it, as
        asyncio's servers do, instead of spinning on a socket that stays readable."""
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none waiting, or one the client gave up: the next readiness brings the rest
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES or self._accepting is not loop:
                    raise
                loop.call_exception_handler({
                    "message": f"{self.name}: cannot accept a connection ({exc}); accepting again in {ACCEPT_PAUSE_S:g} s",
                    "exception": exc,
                })
                self._unwatch()
                self._resume = loop.call_later(ACCEPT_PAUSE_S, self._watch, loop)
                return
            self._start_serving(loop, conn)

    def _start_serving(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        task = asyncio.Task(self._serve(conn), loop=loop, eager_start=True)
        if not task.done():
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        """Serve one accepted connection, with TLS if its first byte opens a TLS handshake.

        Why the first look is synchronous: on Linux the listening socket defers each accept until the
        client's first bytes have arrived (`TCP_DEFER_ACCEPT`; an HTTP or TLS client speaks first), so
        the byte is there and the connection is served in the turn it was accepted, with no timeout
        to arm, no future and no reader to register and remove. Elsewhere, or for a client slower
        than the deferral, the byte is awaited for up to FIRST_BYTE_TIMEOUT_S as before."""
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            try:
                first = conn.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                first = await asyncio.wait_for(_peek_byte(loop, conn), FIRST_BYTE_TIMEOUT_S)
            if not first:
                conn.close()
                return
            tls = self._ssl_context if first[0] == TLS_HANDSHAKE_BYTE else None
            server: Any = self._runner.server
            await loop.connect_accepted_socket(server, conn, ssl=tls, ssl_handshake_timeout=FIRST_BYTE_TIMEOUT_S if tls else None)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.CancelledError):
            conn.close()


async def _peek_byte(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The connection's first byte, left in the socket for whoever reads it next."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(conn.fileno())
