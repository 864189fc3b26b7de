"""Helpers for the end-to-end tests: `parley dev` and moto subprocesses, the /ws-test page.

Chromium is Debian's (`/usr/bin/chromium`, or `PARLEY_CHROMIUM`), driven by
Python Playwright; Playwright's own browser download is never used.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
STAGE = "local"
START_TIMEOUT_S = 90
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout_s: float, what: str, interval: float = 0.1, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what}: not ready within {timeout_s} s\n{tail}")


def _stop_process(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the gateway and its workers
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class MotoServer:
    """A standalone moto server: DynamoDB that survives gateway restarts."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"moto-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MotoServer":
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(lambda: port_accepts(self.port), 30, "moto_server", proc=self.proc, log=self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc)
            self.proc = None


class Gateway:
    """`parley dev` on 127.0.0.1:port, as a subprocess."""

    def __init__(self, port: int, log_dir: Path, dynamodb_endpoint: str | None = None):
        self.port = port
        self.dynamodb_endpoint = dynamodb_endpoint
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/{STAGE}"

    def start(self) -> "Gateway":
        self.starts += 1
        cmd = [sys.executable, "-m", "parley_local.cli", "dev", "--port", str(self.port), "--stage", STAGE, "--quiet"]
        if os.environ.get("PARLEY_E2E_TEMPLATE"):
            cmd += ["--template", os.environ["PARLEY_E2E_TEMPLATE"]]
        # the page is served from this port, and the handshake's Origin check must accept it
        cmd += ["--parameter-overrides", f"AllowedOrigins=http://127.0.0.1:{self.port},http://localhost:{self.port}"]
        if self.dynamodb_endpoint:
            cmd += ["--dynamodb-endpoint", self.dynamodb_endpoint]
        self.log = self.log_dir / f"gateway-{self.port}-{self.starts}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_accepts(self.port), START_TIMEOUT_S, f"parley dev on port {self.port}", proc=self.proc, log=self.log)
        wait_until(self._token_ok, 30, "GET /dev/token", proc=self.proc, log=self.log, interval=0.25)
        return self

    def _token_ok(self) -> bool:
        try:
            return bool(self.token("probe"))
        except Exception:  # noqa: BLE001
            return False

    def token(self, user: str, name: str | None = None) -> str:
        q = urllib.parse.urlencode({"user": user, "name": name or user})
        with urllib.request.urlopen(f"{self.http}/dev/token?{q}", timeout=5) as res:
            return json.loads(res.read())["token"]

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc)
            self.proc = None
        wait_until(lambda: not port_accepts(self.port), 15, f"port {self.port} to close")


def open_ws_test(context, gw: Gateway, user: str, room: str | None = None, autoconnect: bool = True):
    """Open /ws-test for `user`; page errors fail the test."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    q = {"user": user}
    if room:
        q["room"] = room
    if autoconnect:
        q["autoconnect"] = "1"
    page.goto(f"{gw.http}/ws-test?{urllib.parse.urlencode(q)}")
    if autoconnect:
        page.wait_for_selector("#state[data-state=open]")
        if room:
            page.wait_for_function("r => document.getElementById('joined').textContent === r", arg=room)
    return page
