"""Page origins for local work, over real sockets through `parley dev` and the real authorizer:
any port of localhost / 127.0.0.1 by default, more with --allow-origins (`make dev ORIGINS=...`)
without dropping those, a refusal that logs the fix, and the deployed default left strict."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from parley_local.tokens import make_token
from parley_testing.dev_process import DevProcess
from parley_testing.fixture_clients import request
from parley_testing.gateway_thread import SMALL_TEMPLATE
from parley_testing.ports import ipv6_loopback_available
from parley_testing.template import ROOT, load_template
from parley_testing.waiting import wait_for


def start(*extra: str) -> DevProcess:
    dev = DevProcess(["--port", "0", "--no-prewarm", "--dynamodb", "moto", "--stack-name", f"origins{time.time_ns() % 10**6}", *extra])
    dev.wait_ready(120)
    return dev


@pytest.fixture(scope="module")
def default_dev() -> Iterator[DevProcess]:
    dev = start()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def extra_dev() -> Iterator[DevProcess]:
    dev = start("--allow-origins", "http://app.test:8080, http://192.168.1.20:5173")
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def ipv6_dev() -> Iterator[DevProcess]:
    dev = start("--host", "::1")  # IPv6 loopback: still this machine only
    yield dev
    dev.stop()


async def handshake(dev: DevProcess, origin: str) -> int:
    """The HTTP status of a WebSocket handshake from a page at `origin` (101: accepted)."""
    try:
        ws: Any = await websockets.connect(f"{dev.ws_url}?token={make_token('alice')}", origin=origin, open_timeout=30)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def test_pages_on_any_local_port_are_accepted(default_dev: DevProcess):
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://localhost:3001"):
        assert await handshake(default_dev, origin) == 101, origin


async def test_other_origins_are_refused_and_the_log_names_the_fix(default_dev: DevProcess):
    for origin in ("http://evil.example:5173", "https://localhost:5173", "http://localhost.evil.example:80"):
        assert await handshake(default_dev, origin) == 403, origin

    def logged() -> bool:
        return any("http://evil.example:5173" in line and "make dev ORIGINS=http://evil.example:5173" in line
                   for line in default_dev.lines)

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert logged(), "".join(default_dev.lines[-20:])


async def test_allow_origins_adds_without_dropping_the_built_ins(extra_dev: DevProcess):
    assert re.search(r"Page origins:\s+http://127\.0\.0\.1:\*,http://localhost:\*,http://app\.test:8080,http://192\.168\.1\.20:5173",
                     extra_dev.output() if extra_dev.proc.poll() is not None else "".join(extra_dev.lines))
    for origin in ("http://app.test:8080", "http://192.168.1.20:5173", "http://localhost:5173"):
        assert await handshake(extra_dev, origin) == 101, origin
    for origin in ("http://app.test:9090", "http://evil.example:8080"):
        assert await handshake(extra_dev, origin) == 403, origin


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
async def test_with_host_ipv6_loopback_its_pages_origin_is_accepted(ipv6_dev: DevProcess):
    """A page from `http://[::1]:PORT` (the gateway's own /ws-test included) sends that Origin, brackets and all."""
    port = int(ipv6_dev.ws_url.split("]:")[1].split("/")[0])
    assert ipv6_dev.ws_url.startswith("ws://[::1]:")
    assert re.search(r"Page origins:\s+http://127\.0\.0\.1:\*,http://localhost:\*,http://\[::1\]:\*\s", "".join(ipv6_dev.lines))
    for origin in (f"http://[::1]:{port}", "http://[::1]:5173", "http://localhost:5173"):
        assert await handshake(ipv6_dev, origin) == 101, origin
    for origin in ("http://[::2]:5173", "https://[::1]:5173"):
        assert await handshake(ipv6_dev, origin) == 403, origin


def test_the_deployed_default_stays_a_strict_list():
    default = load_template()["Parameters"]["AllowedOrigins"]["Default"]
    assert default and "*" not in default


async def test_a_template_that_comes_to_declare_allowed_origins_gets_the_local_ones(copy_stack: Callable[[Path], Path], tmp_path: Path):
    """A redeploy works out the page origins as a start does: a template saved with `AllowedOrigins` while
    `parley dev` runs gets the local ones (and `--allow-origins`), not its Default, which is a deployed
    site's and would refuse every page on this machine until a restart."""
    template = copy_stack(SMALL_TEMPLATE)
    dev = DevProcess(["--template", str(template), "--port", "0", "--dynamodb", "moto", "--stack-name", f"redeclared{time.time_ns() % 10**6}",
                      "--parameter-overrides", f"RecordDir={tmp_path / 'records'}", "--allow-origins", "http://app.test:8080"])
    try:
        dev.wait_ready(120)
        template.write_text(template.read_text().replace(
            "Parameters:\n", "Parameters:\n  AllowedOrigins:\n    Type: String\n    Default: https://chat.example.com\n").replace(
            "      Handler: echo.handler\n",
            "      Handler: echo.handler\n      Environment:\n        Variables:\n          FIXTURE_VALUE: !Ref AllowedOrigins\n"))
        reloads = wait_for(lambda: [line for line in dev.lines if "Template reloaded" in line], 30, what="the reload line")
        assert "changed EchoFunction" in reloads[0], dev.output()
        async with websockets.connect(dev.ws_url, open_timeout=30) as ws:
            env = (await request(ws, {"action": "echo"}))["env"]
        assert env["FIXTURE_VALUE"] == "http://127.0.0.1:*,http://localhost:*,http://app.test:8080", env
    finally:
        dev.stop()


def test_a_rule_that_refuses_the_local_origins_stops_it_with_one_line(copy_stack: Callable[[Path], Path]):
    """The page origins are filled in when the gateway is built; a template Rule that refuses them is the
    same one-line error and status 2 as any other refused parameter, not a traceback."""
    import subprocess
    import sys

    template = copy_stack(SMALL_TEMPLATE)
    template.write_text(template.read_text().replace(
        "Parameters:\n", "Parameters:\n  AllowedOrigins:\n    Type: String\n    Default: https://chat.example.com\n").replace(
        "Resources:\n", "Rules:\n  HttpsOnly:\n    Assertions:\n      - Assert: !Equals [!Ref AllowedOrigins, https://chat.example.com]\n"
                        "        AssertDescription: only the deployed site\n\nResources:\n", 1))
    done = subprocess.run([sys.executable, "-m", "parley_local.cli", "dev", "--template", str(template), "--port", "0",
                           "--dynamodb", "moto"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["parley dev: template.yaml: parameters refused by rule HttpsOnly: only the deployed site"]
