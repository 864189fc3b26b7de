"""Fixtures for the end-to-end tests: `parley dev` subprocesses, a moto server that outlives them, headless Chromium.

Chromium is Debian's (`/usr/bin/chromium`, or `PARLEY_CHROMIUM`), driven by
Python Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from parley_testing.browser import ARTIFACTS, CHROMIUM_ARGS, DevGateway
from parley_testing.moto_process import MotoServer
from parley_testing.ports import free_port
from parley_testing.template import ROOT as REPO


def _require_gateway() -> None:
    if not (REPO / "parley_local" / "cli.py").exists():
        pytest.skip("parley_local/cli.py (the `parley dev` gateway) is not there yet")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def log_dir(artifacts: Path) -> Path:
    d = artifacts / "logs"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def moto(log_dir: Path) -> Iterator[MotoServer]:
    server = MotoServer(log_dir / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(log_dir: Path, moto: MotoServer) -> Iterator[DevGateway]:
    """One `parley dev` for the tests that do not restart it."""
    _require_gateway()
    gw = DevGateway(free_port(), log_dir, moto.endpoint).start()
    yield gw
    gw.stop()


@pytest.fixture
def restartable_gateway(log_dir: Path, moto: MotoServer) -> Iterator[DevGateway]:
    """A `parley dev` of the test's own, which the test stops and starts."""
    _require_gateway()
    gw = DevGateway(free_port(), log_dir, moto.endpoint).start()
    yield gw
    gw.stop()


@pytest.fixture
def make_gateway(log_dir: Path, moto: MotoServer) -> Iterator:
    """Start more gateways on the same moto DynamoDB."""
    _require_gateway()
    started: list[DevGateway] = []

    def make() -> DevGateway:
        gw = DevGateway(free_port(), log_dir, moto.endpoint).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def _skip_or_fail(reason: str) -> None:
    """Skip on a developer machine without the browser tooling; in CI (CI=true) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _chromium_path() -> str:
    for cand in (os.environ.get("PARLEY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and Path(cand).exists():
            return cand
    _skip_or_fail("no Chromium: install Debian's `chromium` (apt-get install chromium) or set PARLEY_CHROMIUM")


# Module scope: Playwright's sync API keeps an event loop running on the main thread while it
# is alive, which would break every asyncio test collected after the browser tests.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright import sync_api
    except ImportError:
        _skip_or_fail("pip install playwright (its browser download is not needed)")
    path = _chromium_path()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def context(browser) -> Iterator:
    ctx = browser.new_context(viewport={"width": 1400, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def room_id() -> str:
    return f"e2e-{os.urandom(4).hex()}"
