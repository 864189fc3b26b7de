"""End to end in headless Chromium: the React example (examples/react-chat), built as docs/CLIENT.md says.

`make example` installs `@parley/client` into the example with the documented command and builds it;
this test serves the build, opens two users' pages and checks chat, typing, a burst in order, a
gateway restart mid-conversation and a message sent while the gateway is down (delivered once).
"""

from __future__ import annotations

import functools
import os
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from parley_testing.browser import ARTIFACTS, DevGateway
from parley_testing.moto_process import MotoServer
from parley_testing.ports import free_port
from parley_testing.template import ROOT as REPO

EXAMPLE = REPO / "examples" / "react-chat"
DIST = EXAMPLE / "dist"
RECONNECT_S = 60  # the example's backoff is capped at 5 s; the gateway itself may take long to start here

# Records every state the status badge shows, so a test can say which states a page went through.
STATE_RECORDER = """
() => {
  const el = document.getElementById('status');
  window.__states = [el.dataset.state];
  new MutationObserver(() => {
    if (window.__states.at(-1) !== el.dataset.state) window.__states.push(el.dataset.state);
  }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
}
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture(scope="module")
def example_site() -> Iterator[str]:
    """The example's production build (`make example`), served over HTTP on a free port."""
    if not (DIST / "index.html").exists():
        reason = "examples/react-chat is not built: run `make example`"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_QuietHandler, directory=str(DIST)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def example_gateway(log_dir: Path, moto: MotoServer, example_site: str) -> Iterator[DevGateway]:
    """A `parley dev` of this test's own (it restarts it) that accepts the example's origin."""
    gw = DevGateway(free_port(), log_dir, moto.endpoint, extra_origins=(example_site,)).start()
    yield gw
    gw.stop()


def test_the_example_has_one_react(example_site: str):
    """The documented install copies the client (no symlink, no node_modules of its own): one React in the app."""
    installed = EXAMPLE / "node_modules" / "@parley" / "client"
    assert installed.is_dir() and not installed.is_symlink()
    assert not (installed / "node_modules").exists()
    assert (installed / "lib" / "connection.js").exists()


def _open(context, site: str, gw: DevGateway, user: str, room: str):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(f"{site}/?{urllib.parse.urlencode({'user': user, 'room': room, 'url': gw.ws})}")
    page.wait_for_selector("#status[data-state=open]")
    page.wait_for_selector("#room[data-joined=true]")
    page.evaluate(STATE_RECORDER)
    return page


def _texts(page) -> list[str]:
    return page.locator("#messages li .text").all_inner_texts()


def _send(page, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def _wait_text(page, text: str, timeout_s: float = 15) -> None:
    page.locator("#messages li .text", has_text=text).first.wait_for(timeout=timeout_s * 1000)


def test_two_users_chat_type_and_survive_a_gateway_restart(context, example_site: str, example_gateway: DevGateway, room_id: str):
    gw = example_gateway
    alice = _open(context, example_site, gw, "alice", room_id)
    bob = _open(context, example_site, gw, "bob", room_id)
    alice.locator("#participants li[data-user-id=bob]").wait_for()
    bob.locator("#participants li[data-user-id=alice]").wait_for()
    alice.locator("#participant-count", has_text="2").wait_for()  # useParticipants' count

    # typing, then chat
    alice.fill("#chat-input", "hello b")
    bob.locator("#typing", has_text="alice is typing").wait_for()
    _send(alice, "hello bob")
    _wait_text(bob, "hello bob")
    bob.locator("#typing", has_text="alice is typing").wait_for(state="detached")
    _send(bob, "hi alice")
    _wait_text(alice, "hi alice")

    # a burst from one sender reaches the other in the order it was sent
    burst = [f"burst {i}" for i in range(8)]
    for text in burst:
        _send(alice, text)
    _wait_text(bob, burst[-1])
    assert _texts(bob) == ["hello bob", "hi alice", *burst]

    # the gateway goes away; both pages say so and keep trying (their getToken fails meanwhile)
    gw.stop()
    for page in (alice, bob):
        page.wait_for_selector("#status[data-state=reconnecting]", timeout=15_000)
    _send(alice, "sent while down")  # queued by the client
    time.sleep(2)  # a few failed attempts (token fetch refused) while down
    assert alice.locator("#status").get_attribute("data-state") == "reconnecting"
    gw.start()  # same port, same DynamoDB

    for page in (alice, bob):
        page.wait_for_selector("#status[data-state=open]", timeout=RECONNECT_S * 1000)
    _wait_text(bob, "sent while down", RECONNECT_S)
    _wait_text(alice, "sent while down", RECONNECT_S)
    _send(bob, "after the restart")
    _wait_text(alice, "after the restart")
    time.sleep(1)  # room for a duplicate to show up, if one were coming

    expected = ["hello bob", "hi alice", *burst, "sent while down", "after the restart"]
    assert _texts(alice) == expected
    assert _texts(bob) == expected
    for page in (alice, bob):
        states = page.evaluate("window.__states")
        assert "closed" not in states, states
        assert states[-1] == "open" and "reconnecting" in states, states
        assert page.errors == []
    alice.screenshot(path=str(ARTIFACTS / "react-example.png"))
