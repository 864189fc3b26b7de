"""The embedded AWS services: moto's server in a process of its own, for the gateway's lifetime.

Run by `moto_services.LocalAws` as `python -I moto_server_main.py HOST` (executed by path, like the
Lambda workers). Why a process and not a thread of the gateway: moto is pure Python, so in the
gateway's process every DynamoDB call the handlers make (a Query of 1,000 memberships is ~0.5 s
of CPU) held the GIL against the event loop that serves the sockets and `@connections`; here it
runs on another core.

Protocol: one JSON line `{"port": N}` on stdout once the server listens on HOST (port chosen by
the OS); then the process serves until its stdin reaches EOF (the gateway stopped it, or died)
and exits at once. SIGINT and SIGTERM are ignored: a terminal's Ctrl-C (or a service manager's
SIGTERM) reaches the whole process group, and the gateway still needs DynamoDB while it runs
`$disconnect` for every open socket.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

from parley_local.child_processes import ignore_stop_signals


def memoise_dispatch() -> type:
    """moto's request dispatch, minus work that is the same for every request; returns the WSGI app class.

    For every request moto's server lists its own package directory (~170 `stat` calls) and tries
    its ~400 URL patterns to find the service of a host, and lists the response class's methods
    with `inspect.getmembers`. All three answers are fixed for the life of the process, so they are
    memoised here: a quarter of moto's CPU per PutItem (measured 2.3 -> 1.75 ms of CPU per call).
    What moto answers is unchanged.
    """
    import functools

    from moto import backends
    from moto.core import responses, utils
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(utils.method_names_from_class)  # type: ignore[attr-defined]

    class App(DomainDispatcherApplication):  # type: ignore[misc]
        hosts: dict[str | None, object] = {}

        def get_backend_for_host(self, host: str | None) -> object:
            try:
                return self.hosts[host]
            except KeyError:
                backend = super().get_backend_for_host(host)
                if len(self.hosts) < 4096:
                    self.hosts[host] = backend
                return backend

    return App


def main() -> None:
    ignore_stop_signals()
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per handler call
    dispatch = memoise_dispatch()(create_backend_app)
    # moto's backends are not thread-safe (a Query iterating a table while a PutItem adds to it
    # fails with "dictionary changed size during iteration"), and the work is CPU-bound anyway:
    # accept connections on threads, run one request at a time.
    backend_lock = threading.Lock()

    def app(environ: dict, start_response: object) -> list[bytes]:
        with backend_lock:
            return list(dispatch(environ, start_response))

    server = make_server(host, 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
    sys.stdout.write(json.dumps({"port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    os.dup2(2, 1)  # anything printed later joins stderr; stdout was only for the port line
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        os._exit(0)  # in-memory state only: nothing to flush, no interpreter teardown to wait for


if __name__ == "__main__":
    main()
