"""Issue 13 in headless Chromium: /ws-test edits, deletes, reacts, lists rooms and shows a
`forbidden` from a token's rooms claim, against `parley dev` and the real handlers."""

from __future__ import annotations

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
