"""The browser suite's pieces: `parley dev` on a known port (restartable, serving /ws-test),
Chromium's flags, and opening /ws-test for a user.

Chromium is Debian's (`/usr/bin/chromium`, or `PARLEY_CHROMIUM`), driven by Python Playwright;
Playwright's own browser download is never used. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from .dev_process import DevProcess
from .ports import port_accepts
from .template import ROOT
from .waiting import wait_for

ARTIFACTS = ROOT / "test-artifacts"
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


class DevGateway:
    """`parley dev --quiet` on 127.0.0.1:`port`, its output in a log file per start; stop and start again at will."""

    def __init__(self, port: int, log_dir: Path, dynamodb_endpoint: str | None = None, extra_origins: tuple[str, ...] = (),
                 overrides: dict[str, str] | None = None):
        self.port = port
        self.overrides = dict(overrides or {})  # more template parameters, e.g. {"PresenceThreshold": "2"}
        self.extra_origins = extra_origins  # pages served elsewhere (e.g. the React example's static server)
        self.dynamodb_endpoint = dynamodb_endpoint
        self.log_dir = log_dir
        self.dev: DevProcess | None = None
        self._log: TextIO | None = None
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/{STAGE}"

    def start(self) -> "DevGateway":
        self.starts += 1
        args = ["--port", str(self.port), "--stage", STAGE, "--quiet"]
        if os.environ.get("PARLEY_E2E_TEMPLATE"):
            args += ["--template", os.environ["PARLEY_E2E_TEMPLATE"]]
        # the page is served from this port, and the handshake's Origin check must accept it
        origins = [f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}", *self.extra_origins]
        args += ["--parameter-overrides", "AllowedOrigins=" + ",".join(origins), *(f"{k}={v}" for k, v in self.overrides.items())]
        if self.dynamodb_endpoint:
            args += ["--dynamodb-endpoint", self.dynamodb_endpoint]
        self.log = self.log_dir / f"gateway-{self.port}-{self.starts}.log"
        self._log = open(self.log, "w")
        self.dev = DevProcess(args, log=self._log)
        self.dev.wait_ready(START_TIMEOUT_S)
        return self

    def token(self, user: str, name: str | None = None) -> str:
        q = urllib.parse.urlencode({"user": user, "name": name or user})
        with urllib.request.urlopen(f"{self.http}/dev/token?{q}", timeout=5) as res:  # noqa: S310 (local URL)
            return str(json.loads(res.read())["token"])

    def stop(self) -> None:
        if self.dev is not None:
            self.dev.stop(signal.SIGTERM, 15)
            self.dev = None
        if self._log is not None:
            self._log.close()
            self._log = None
        wait_for(lambda: not port_accepts(self.port), 15, what=f"port {self.port} to close")


def open_ws_test(context: Any, gw: DevGateway, user: str, room: str | None = None, autoconnect: bool = True) -> Any:
    """Open /ws-test for `user`; page errors are collected in `page.errors`."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
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
