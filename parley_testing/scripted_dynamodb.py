"""A front for DynamoDB Local on 127.0.0.1 that fails on request, the ways DynamoDB's answers can fail.

Why: DynamoDB Local answers every call, so it cannot show what a client does with a throttled call,
a 500, a corrupted body (the `x-amz-crc32` DynamoDB sends), a connection dropped without an answer or
an answer that never comes. This front passes each call on to DynamoDB Local unless a step is
scripted for it, checks every call's SigV4 signature as AWS does (DynamoDB Local checks none), and
records what arrived, so a test can compare two clients' attempts on the same script.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .sigv4_check import signature_problem

# A step: "pass" (DynamoDB Local answers), "crc" (its answer with a wrong x-amz-crc32), "drop" (the
# connection closes with no answer), "hang" (no answer for `hang_s`, then the connection closes), or
# (status, error code): DynamoDB's JSON error.
Step = Any


@dataclass
class Arrival:
    target: str
    user_agent: str
    signature_problem: str | None


@dataclass
class ScriptedDynamoDB:
    backend: str  # DynamoDB Local's endpoint
    credentials: Any  # botocore's: every call's signature is checked against them
    hang_s: float = 1.0
    region: str = "us-east-1"  # the credential scope every call must name, as DynamoDB's endpoint in that region requires
    script: list[Step] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def next_step(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else "pass"

    def take(self) -> list[Arrival]:
        with self._lock:
            taken, self.arrivals = self.arrivals, []
            return taken

    def start(self) -> "ScriptedDynamoDB":
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items()}
                problem = signature_problem(front.credentials, "POST", f"{front.url}{self.path}", headers, body,
                                            scope=(front.region, "dynamodb"))
                with front._lock:
                    front.arrivals.append(Arrival(headers.get("X-Amz-Target", ""), headers.get("User-Agent", ""), problem))
                step = front.next_step()
                if step == "drop" or step == "hang":
                    if step == "hang":
                        time.sleep(front.hang_s)
                    self.close_connection = True
                    return
                if problem is not None:
                    self._answer(400, self._error("InvalidSignatureException", problem))
                elif isinstance(step, tuple):
                    self._answer(step[0], self._error(step[1], "scripted"))
                else:
                    status, answer = self._pass_on(body, headers)
                    self._answer(status, answer, wrong_crc=step == "crc")

            @staticmethod
            def _error(code: str, message: str) -> bytes:
                return json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()

            def _pass_on(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
                backend = urlsplit(front.backend)
                conn = http.client.HTTPConnection(backend.hostname, backend.port, timeout=10)
                try:
                    conn.request("POST", "/", body=body, headers={k: v for k, v in headers.items() if k.lower() != "host"})
                    reply = conn.getresponse()
                    return reply.status, reply.read()
                finally:
                    conn.close()

            def _answer(self, status: int, body: bytes, wrong_crc: bool = False) -> None:
                crc = zlib.crc32(body) ^ (1 if wrong_crc else 0)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-RequestId", "scripted")
                self.send_header("x-amz-crc32", str(crc))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
