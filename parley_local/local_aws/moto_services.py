"""moto's server serving every AWS service the functions call (SSM, and DynamoDB with `--dynamodb moto`).

Why: handlers reach DynamoDB, SSM and the rest through the standard
`AWS_ENDPOINT_URL*` variables, so they need a real HTTP endpoint. moto's
server provides one on a free 127.0.0.1 port with no Docker or Java.

Why a subprocess by default (`moto_server_main.py`): moto is pure Python; in the
gateway's process its work (2-3 ms of CPU per `$connect` PutItem, 0.5 s for a
Query of 1,000 items) competed for the GIL with the event loop serving the
sockets and `@connections`. Opening 1,000 connections, the gateway process
spent ~4.5 ms of CPU per handshake with moto inside it, ~1.5 ms without.
`mode="thread"` keeps the in-process `ThreadedMotoServer`
(`parley dev --moto-mode thread`), for comparison.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..child_processes import read_ready_line, stop_by_eof, stop_signals_blocked

MOTO_SCRIPT = str(Path(__file__).with_name("moto_server_main.py"))
MOTO_START_TIMEOUT_S = 60.0
MOTO_MODES = ("subprocess", "thread")


class EmbeddedMoto:
    """moto's server for the gateway's lifetime: its own process (default) or a thread of the gateway."""

    def __init__(self, server: Any, endpoint: str):
        self._server = server
        self.endpoint = endpoint

    @classmethod
    def start(cls, mode: str = "subprocess") -> "EmbeddedMoto":
        """Start it (blocking: call it from a thread); `mode` is "subprocess" or "thread"."""
        if mode == "thread":
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per handler call
            server: Any = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
        elif mode == "subprocess":
            server = _start_moto_process()
            host, port = "127.0.0.1", server.moto_port
        else:
            raise ValueError(f"unknown moto mode {mode!r}: expected one of {MOTO_MODES}")
        return cls(server, f"http://{host}:{port}")

    @property
    def pid(self) -> int | None:
        """The moto subprocess's pid (None in thread mode or once stopped)."""
        return self._server.pid if isinstance(self._server, subprocess.Popen) else None

    def stop(self) -> None:
        server, self._server = self._server, None
        if isinstance(server, subprocess.Popen):
            stop_by_eof(server, 2.0)
        elif server is not None:
            server.stop()


def _start_moto_process() -> subprocess.Popen[bytes]:
    """Spawn `moto_server_main.py` and read the port it listens on (bounded wait)."""
    with stop_signals_blocked():  # Ctrl-C must not kill it while it starts: `$disconnect` handlers need it
        proc = subprocess.Popen(
            [sys.executable, "-I", MOTO_SCRIPT, "127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=os.environ.copy(),
        )
    line = read_ready_line(proc, MOTO_START_TIMEOUT_S)
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        stop_by_eof(proc, 2.0)
        raise OSError(f"the embedded moto server did not start (exit status {proc.returncode}, said {line[:200]!r})") from None
    proc.moto_port = port  # type: ignore[attr-defined]
    return proc
