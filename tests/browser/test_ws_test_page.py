"""End to end in headless Chromium: the /ws-test page and parley-client.js against `parley dev`."""

from __future__ import annotations

import json
import time
import urllib.request

from parley_testing.browser import DevGateway, open_ws_test

from websockets.sync.client import connect as ws_connect


def _message_texts(page) -> list[str]:
    return page.locator("#messages li .text").all_inner_texts()


def _wait_message(page, text: str, timeout_ms: int = 15_000) -> None:
    page.locator("#messages li .text", has_text=text).first.wait_for(timeout=timeout_ms)


def test_gateway_serves_client_and_page(gateway: DevGateway):
    with urllib.request.urlopen(f"{gateway.http}/parley-client.js", timeout=5) as res:
        body = res.read().decode()
        assert "export class ParleyClient" in body
        assert "javascript" in res.headers.get("Content-Type", "")
    with urllib.request.urlopen(f"{gateway.http}/ws-test", timeout=5) as res:
        assert "import { ParleyClient, RoomMessages } from '/parley-client.js'" in res.read().decode()
    with urllib.request.urlopen(f"{gateway.http}/lib/messages.js", timeout=5) as res:  # parley-client.js re-exports RoomMessages from it
        assert "export class RoomMessages" in res.read().decode()


def test_two_pages_chat_in_one_room(context, gateway: DevGateway, room_id: str):
    alice = open_ws_test(context, gateway, "alice", room_id)
    bob = open_ws_test(context, gateway, "bob", room_id)

    # both see both in the participants list
    alice.locator("#participants li[data-user-id=bob]").wait_for()
    bob.locator("#participants li[data-user-id=alice]").wait_for()

    alice.fill("#chat-input", "hello bob")
    alice.click("#send")
    _wait_message(bob, "hello bob")
    _wait_message(alice, "hello bob")

    bob.check("#typing-toggle")
    alice.locator("#typing", has_text="bob is typing").wait_for()

    bob.fill("#chat-input", "hi alice")
    bob.press("#chat-input", "Enter")
    _wait_message(alice, "hi alice")
    # sender's own view shows delivery to the other connection
    alice.locator("#messages li.mine .meta", has_text="delivered to 1").wait_for()

    assert _message_texts(alice) == ["hello bob", "hi alice"]
    assert _message_texts(bob) == ["hello bob", "hi alice"]

    # leaving: the other side sees it
    bob.click("#leave")
    alice.locator("#participants li[data-user-id=bob]").wait_for(state="detached")
    assert alice.errors == [] and bob.errors == []


def test_every_frame_is_logged_and_raw_frames_work(context, gateway: DevGateway):
    page = open_ws_test(context, gateway, "rawuser")
    page.click("#echo")
    page.locator("#log li.in", has_text='"message_response"').wait_for()
    page.fill("#raw", '{"type": "no_such_type", "data": {}}')
    page.click("#send-raw")
    page.locator("#log li.out", has_text="no_such_type").wait_for()
    page.locator("#log li.in", has_text='"unknown_type"').wait_for()
    page.fill("#raw", "not json at all")
    page.click("#send-raw")
    page.locator("#log li.in", has_text='"invalid_json"').wait_for()
    assert page.errors == []


def _send_as(gw: DevGateway, user: str, room: str, texts: list[str], timeout_s: float = 15) -> list[str]:
    """Join `room` as `user` over a plain WebSocket and post `texts`; returns their messageIds."""
    ids = []
    with ws_connect(f"{gw.ws}?token={gw.token(user)}", open_timeout=timeout_s) as ws:
        ws.send(json.dumps({"type": "join_room", "data": {"roomId": room}}))
        deadline = time.monotonic() + timeout_s
        while True:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if frame["type"] == "chat_history":
                break
        for i, text in enumerate(texts):
            cmid = f"{user}-{i}-{time.time_ns()}"
            ws.send(json.dumps({"type": "chat_message", "data": {"roomId": room, "message": text, "clientMessageId": cmid}}))
            while True:
                frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if frame["type"] == "error":
                    raise AssertionError(f"chat_message refused: {frame}")
                if frame["type"] == "message_received" and frame["data"].get("clientMessageId") == cmid:
                    ids.append(frame["data"]["messageId"])
                    break
    return ids


def test_page_reconnects_after_gateway_restart_and_shows_missed_messages(context, restartable_gateway: DevGateway, make_gateway, room_id: str):
    gw = restartable_gateway
    alice = open_ws_test(context, gw, "alice", room_id)
    sockets = []
    alice.on("websocket", lambda ws: sockets.append(ws.url))

    alice.fill("#chat-input", "before the restart")
    alice.click("#send")
    _wait_message(alice, "before the restart")

    gw.stop()
    alice.wait_for_function("() => ['reconnecting'].includes(document.getElementById('state').dataset.state)", timeout=15_000)
    # at least one failed attempt while the gateway is down
    alice.wait_for_function("() => Number(document.getElementById('attempts').textContent) >= 2", timeout=20_000)

    # While alice is away, bob posts through another gateway on the same DynamoDB
    # (this one is down), so the messages can only reach alice via rejoin `since`.
    other = make_gateway()
    _send_as(other, "bob", room_id, ["missed one", "missed two"])
    other.stop()

    # alice also types while offline: queued, delivered after the reconnect
    alice.fill("#chat-input", "typed while offline")
    alice.click("#send")

    gw.start()
    alice.wait_for_selector("#state[data-state=open]", timeout=30_000)
    for text in ("missed one", "missed two", "typed while offline"):
        _wait_message(alice, text, timeout_ms=20_000)

    # nothing twice, in order
    texts = _message_texts(alice)
    assert texts == ["before the restart", "missed one", "missed two", "typed while offline"], texts
    # the rejoin carried `since`
    assert alice.locator("#log li.out", has_text='"since"').count() >= 1
    assert len(sockets) >= 2
    assert alice.errors == []


def test_refused_token_is_not_retried(context, gateway: DevGateway):
    page = context.new_page()
    attempts = []
    page.on("websocket", lambda ws: attempts.append(ws.url))
    page.goto(f"{gateway.http}/ws-test")
    page.fill("#user", "mallory")
    page.fill("#token", "not-a-valid-jwt")
    page.click("#connect")
    page.wait_for_selector("#state[data-state=closed]", timeout=15_000)
    assert "refused" in page.locator("#conn-error").inner_text()
    page.wait_for_timeout(3000)  # longer than the page's first backoff delays
    assert len(attempts) == 1, attempts
    assert page.locator("#attempts").inner_text() == "0"


def test_ws_test_screenshot(context, gateway: DevGateway, artifacts, room_id: str):
    bob = open_ws_test(context, gateway, "bob", room_id)
    alice = open_ws_test(context, gateway, "alice", room_id)
    alice.locator("#participants li[data-user-id=bob]").wait_for()
    bob.fill("#chat-input", "Hi Alice! Parley runs on API Gateway WebSockets.")
    bob.click("#send")
    _wait_message(alice, "Hi Alice!")
    alice.fill("#chat-input", "Hi Bob, no socket.io in sight.")
    alice.click("#send")
    _wait_message(alice, "no socket.io")
    bob.check("#typing-toggle")
    alice.locator("#typing", has_text="bob is typing").wait_for()
    alice.click("#echo")
    alice.click("#ping")
    alice.locator("#log li.in", has_text='"pong"').wait_for()
    path = artifacts / "ws-test.png"
    alice.screenshot(path=str(path), full_page=True)
    assert path.exists() and path.stat().st_size > 10_000
