"""A stand-in for AWS's `@connections` endpoint on 127.0.0.1, with scriptable failures.

It answers the way API Gateway does (status, `x-amzn-ErrorType`, JSON body) so the real
sender is exercised over real HTTP: PostToConnection (`script` per connection, `is_gone` for
410s) and DeleteConnection (recorded in `deleted`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any, Callable
from urllib.parse import unquote

from aiohttp import web

ERROR_TYPES = {410: "GoneException", 413: "PayloadTooLargeException", 429: "LimitExceededException", 403: "ForbiddenException", 500: "InternalServerError"}


class FakeConnectionsApi:
    def __init__(self, latency_ms: float = 0.0, is_gone: Callable[[str], bool] = lambda connection_id: False,
                 credentials: Any = None) -> None:
        """`credentials` (botocore's): every call's SigV4 signature is checked against them, and a
        bad one is answered 403 InvalidSignatureException, as AWS does (listed in `bad_signatures`)."""
        self.latency = latency_ms / 1000
        self.is_gone = is_gone
        self.credentials = credentials
        self.bad_signatures: list[str] = []
        self.script: dict[str, list[int | str]] = {}  # connection id -> statuses to answer, in order
        self.attempts: dict[str, int] = defaultdict(int)  # PostToConnection calls per connection
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.deleted: list[str] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        connection_id = unquote(request.match_info["id"])
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            if (refused := self._check_signature(request, body)) is not None:
                return refused
            if self.latency:
                await asyncio.sleep(self.latency)
            with self._lock:
                self.attempts[connection_id] += 1
                steps = self.script.get(connection_id)
                action: int | str = steps.pop(0) if steps else 200
            if action == "hang":  # past any sane client timeout; the post is not delivered
                await asyncio.sleep(1.5)
                action = 504
            if action == 200 and self.is_gone(connection_id):
                action = 410
            if action == 200:
                with self._lock:
                    self.received[connection_id].append(body)
                return web.Response(status=200)
            status = int(action)
            return web.json_response({"message": ERROR_TYPES.get(status, "")}, status=status, headers={"x-amzn-ErrorType": ERROR_TYPES.get(status, "")})
        finally:
            self.in_flight -= 1

    def _check_signature(self, request: web.Request, body: bytes) -> web.Response | None:
        if self.credentials is None:
            return None
        from .sigv4_check import signature_problem

        url = f"{request.scheme}://{request.host}{request.raw_path}"
        problem = signature_problem(self.credentials, request.method, url, request.headers, body)
        if problem is None:
            return None
        self.bad_signatures.append(problem)
        return web.json_response({"message": problem}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})

    async def _delete(self, request: web.Request) -> web.Response:
        if (refused := self._check_signature(request, await request.read())) is not None:
            return refused
        connection_id = unquote(request.match_info["id"])
        self.deleted.append(connection_id)
        if self.is_gone(connection_id):
            return web.json_response({"message": ""}, status=410, headers={"x-amzn-ErrorType": "GoneException"})
        return web.Response(status=204)

    def drain(self) -> dict[str, list[bytes]]:
        """The payloads delivered since the last drain, per connection."""
        with self._lock:
            received, self.received = self.received, defaultdict(list)
        return received

    def start(self) -> "FakeConnectionsApi":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{stage}/@connections/{id}", self._post)
            app.router.add_delete("/{stage}/@connections/{id}", self._delete)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}/test"
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


def main() -> None:
    """Run standalone (a separate process keeps the server off the measured process's GIL)."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="a local stand-in for @connections, for benchmarks")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeConnectionsApi(latency_ms=args.latency_ms).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(1)
            print(f"max_in_flight={server.max_in_flight} calls={server.calls}", flush=True)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
