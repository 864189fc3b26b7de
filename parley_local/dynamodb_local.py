"""Local AWS services for the handlers: moto's server in a subprocess, and the template's tables created in it.

Why: handlers reach DynamoDB, SSM and the rest through the standard
`AWS_ENDPOINT_URL*` variables, so they need a real HTTP endpoint. moto's
server provides one on a free 127.0.0.1 port with no Docker;
`--dynamodb-endpoint` points DynamoDB at DynamoDB Local or AWS instead (moto
still serves SSM and the rest). Tables are created from their CloudFormation
definitions, keys, indexes and TTL included; existing tables are kept.

Why a subprocess by default (`_moto_server.py`): moto is pure Python; in the
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
from typing import Any

import boto3
from botocore.config import Config

from .cfn import REGION
from .lambda_runtime import FAKE_CREDENTIALS, stop_signals_blocked
from .template import TableSpec

MOTO_SCRIPT = str(Path(__file__).with_name("_moto_server.py"))
MOTO_START_TIMEOUT_S = 60.0
MOTO_MODES = ("subprocess", "thread")


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for a local endpoint, with the gateway's fake credentials."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


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

    def create_tables(self, tables: list[TableSpec]) -> list[str]:
        """Create the template's tables (missing ones only) and enable TTL; returns the names created."""
        ddb = self.client("dynamodb")
        existing: set[str] = set()
        for page in ddb.get_paginator("list_tables").paginate():
            existing.update(page.get("TableNames", []))
        created: list[str] = []
        for table in tables:
            if table.name not in existing:
                ddb.create_table(**table.create_args)
                ddb.get_waiter("table_exists").wait(TableName=table.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
                created.append(table.name)
            if table.ttl_attribute:
                current = ddb.describe_time_to_live(TableName=table.name).get("TimeToLiveDescription", {})
                if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                    ddb.update_time_to_live(
                        TableName=table.name,
                        TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                    )
        return created


def _start_moto_process() -> subprocess.Popen[bytes]:
    """Spawn `_moto_server.py` and read the port it listens on (bounded wait)."""
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
