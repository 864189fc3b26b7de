"""Issue 13 in headless Chromium: /ws-test edits, deletes, reacts, lists rooms and shows a
`forbidden` from a token's rooms claim, against `parley dev` and the real handlers."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any, Callable

from parley_testing.browser import DevGateway, open_ws_test


def test_edit_react_delete_and_rooms_between_two_pages(context, gateway: DevGateway, room_id: str):
    alice = open_ws_test(context, gateway, "alice", room_id)
    bob = open_ws_test(context, gateway, "bob", room_id)
    alice.fill("#chat-input", "helo")
    alice.click("#send")
    bob.locator("#messages li .text", has_text="helo").wait_for()

    alice.locator("#messages li.mine .actions button.edit").click()
    alice.fill("#chat-input", "hello")
    alice.click("#send")
    bob.locator("#messages li .text", has_text="hello").wait_for()
    bob.locator("#messages li .meta", has_text="edited").wait_for()

    bob.locator("#messages li .actions button.react").first.click()
    alice.locator("#messages li .reactions", has_text="👍 1").wait_for()

    bob.click("#get-rooms")
    bob.locator(f"#rooms-list li[data-room-id='{room_id}']", has_text="hello").wait_for()

    alice.locator("#messages li.mine .actions button.delete").click()
    bob.locator("#messages li.deleted .text", has_text="(deleted by alice)").wait_for()
    assert alice.errors == [] and bob.errors == []


def test_a_rooms_claim_from_the_page_refuses_other_rooms(context, gateway: DevGateway, room_id: str):
    carol = open_ws_test(context, gateway, "carol", autoconnect=False)
    carol.fill("#user", "carol")
    carol.fill("#rooms-claim", '{"only-this-*": ["read"]}')
    carol.click("#connect")
    carol.wait_for_selector("#state[data-state=open]")
    carol.fill("#room", room_id)
    carol.click("#join")
    carol.locator("#raw-error", has_text="forbidden").wait_for()
    assert carol.errors == []



def test_an_edit_heard_before_the_joins_history_survives_it(context, gateway: DevGateway, room_id: str):
    """The join race (PROTOCOL "Versions") in the page: bob's join is answered with a history page
    holding the message as first stored; his socket's route holds that page back until alice's
    edit has reached him live, as the two can cross on AWS, and the page must keep the edit."""
    alice = open_ws_test(context, gateway, "alice", room_id)
    alice.fill("#chat-input", "helo")
    alice.click("#send")
    alice.locator("#messages li .text", has_text="helo").wait_for()

    held: list[str] = []
    heard: list[str] = []
    routes: list[Any] = []

    def between(ws: Any) -> None:
        routes.append(ws)
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["type"] == "chat_history" and "unreadCount" in frame["data"] and not held:
                held.append(str(message))  # the join's answer, read before the edit: held back
                return
            heard.append(frame["type"])
            ws.send(message)

        server.on_message(to_page)

    bob = context.new_page()
    errors: list[str] = []
    bob.on("pageerror", lambda e: errors.append(str(e)))
    bob.route_web_socket(re.compile(r"^ws://"), between)
    bob.goto(f"{gateway.http}/ws-test?{urllib.parse.urlencode({'user': 'bob', 'room': room_id, 'autoconnect': '1'})}")
    bob.wait_for_selector("#state[data-state=open]")
    _pump_until(bob, lambda: held, "bob's join to be answered")
    [history] = held
    assert [m["message"] for m in json.loads(history)["data"]["messages"]] == ["helo"]

    alice.locator("#messages li.mine .actions button.edit").click()
    alice.fill("#chat-input", "hello")
    alice.click("#send")
    _pump_until(bob, lambda: "message_updated" in heard, "the edit to reach bob live")
    routes[0].send(history)  # now the join's answer, with the copy from before the edit
    bob.locator("#messages li .text", has_text="hello").wait_for()
    bob.wait_for_timeout(300)
    assert bob.locator("#messages li .text").all_inner_texts() == ["hello"]
    assert bob.locator("#messages li .meta", has_text="edited").count() == 1
    assert errors == [] and alice.errors == []


def _pump_until(page: Any, done: Callable[[], object], what: str, timeout_s: float = 15) -> None:
    """Wait for `done`, letting Playwright run the route's callbacks meanwhile (they run inside its calls)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(20)
