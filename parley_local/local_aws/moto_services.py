"""moto's server, in a subprocess, serving every AWS service the functions call (DynamoDB, SSM, ...).

Why: handlers reach DynamoDB, SSM and the rest through the standard
`AWS_ENDPOINT_URL*` variables, so they need a real HTTP endpoint. moto's
server provides one on a free 127.0.0.1 port with no Docker;
`--dynamodb-endpoint` points DynamoDB at DynamoDB Local or AWS instead (moto
still serves SSM and the rest). Tables are created from their CloudFormation
definitions, keys, indexes and TTL included; existing tables are kept.

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
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..child_processes import stop_signals_blocked
from .account import aws_client
from .tables import TableDefinition, create_tables

MOTO_SCRIPT = str(Path(__file__).with_name("moto_server_main.py"))
MOTO_START_TIMEOUT_S = 60.0
MOTO_MODES = ("subprocess", "thread")


@dataclass
class LocalAws:
    """The endpoints the functions use: `endpoint` (moto, every service) and `dynamodb_endpoint`."""

    endpoint: str
    dynamodb_endpoint: str
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, dynamodb_endpoint: str | None = None, mode: str = "subprocess") -> "LocalAws":
        """Start moto's server (blocking: call it from a thread); `mode` is "subprocess" or "thread"."""
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
        endpoint = f"http://{host}:{port}"
        return cls(endpoint=endpoint, dynamodb_endpoint=dynamodb_endpoint or endpoint, _server=server)

    @property
    def pid(self) -> int | None:
        """The moto subprocess's pid (None in thread mode or once stopped)."""
        return self._server.pid if isinstance(self._server, subprocess.Popen) else None

    def stop(self) -> None:
        server, self._server = self._server, None
        if isinstance(server, subprocess.Popen):
            _stop_moto_process(server)
        elif server is not None:
            server.stop()

    def client(self, service: str) -> Any:
        return aws_client(service, self.dynamodb_endpoint if service == "dynamodb" else self.endpoint)

    def env(self) -> dict[str, str]:
        """The standard boto3 endpoint variables for the functions' environment."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint}

    def create_tables(self, tables: Sequence[TableDefinition]) -> list[str]:
        """Create the template's tables (missing ones only) and enable TTL; returns the names created."""
        return create_tables(self.client("dynamodb"), tables)


def _start_moto_process() -> subprocess.Popen[bytes]:
    """Spawn `moto_server_main.py` and read the port it listens on (bounded wait)."""
    with stop_signals_blocked():  # Ctrl-C must not kill it while it starts: `$disconnect` handlers need it
        proc = subprocess.Popen(
            [sys.executable, "-I", MOTO_SCRIPT, "127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=os.environ.copy(),
        )
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + MOTO_START_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
    proc.stdout.close()
    try:
        port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        _stop_moto_process(proc)
        raise OSError(f"the embedded moto server did not start (exit status {proc.returncode}, said {line[:200]!r})") from None
    proc.moto_port = port  # type: ignore[attr-defined]
    return proc


def _stop_moto_process(proc: subprocess.Popen[bytes]) -> None:
    """EOF on its stdin makes it exit at once; killed if it has not within 2 s."""
    if proc.returncode is None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(2)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait(5)
