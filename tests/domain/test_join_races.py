"""A join that lands while a change to the room's history is being made never loses the change.

A join writes its membership and then reads the history; a message (edit, deletion, reaction)
is written and then its audience is read. Each test runs the whole join of a newcomer at the
worst moment, just before the change reaches the store, and asserts the newcomer learns of the
change one way or the other: in the history the join answers, or as a live frame.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from parley_testing.chat_world import Client, MemoryChatWorld


def _join_just_before(world: MemoryChatWorld, monkeypatch: pytest.MonkeyPatch, store_method: str, room: str) -> Client:
    """Connect bob now; make him join `room` inside the next call of the store's `store_method`, before it writes."""
    bob = world.connect("bob")
    write: Callable[..., Any] = getattr(world.store, store_method)
    joined: list[dict[str, Any] | None] = []

    def join_first(*args: Any, **kwargs: Any) -> Any:
        if not joined:
            joined.append(bob.send("join_room", {"roomId": room}))
        return write(*args, **kwargs)

    monkeypatch.setattr(world.store, store_method, join_first)
    bob.joined = joined  # type: ignore[attr-defined]
    return bob


def _history(bob: Client) -> list[dict[str, Any]]:
    (reply,) = bob.joined  # type: ignore[attr-defined]
    assert reply is not None and reply["type"] == "chat_history", reply
    return list(reply["data"]["messages"])


def test_a_message_sent_while_someone_joins_reaches_them(world: MemoryChatWorld, monkeypatch: pytest.MonkeyPatch):
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "r"})
    bob = _join_just_before(world, monkeypatch, "put_message", "r")
    answer = alice.send("chat_message", {"roomId": "r", "message": "hello, whoever is here"})
    assert answer is not None and answer["type"] == "chat_update"
    live = [f["data"]["message"] for f in bob.take() if f["type"] == "message_received"]
    stored = [m["message"] for m in _history(bob)]
    assert live + stored == ["hello, whoever is here"]
    assert answer["data"]["deliveredTo"] == 1  # bob, live


@pytest.mark.parametrize("change, store_method, frame_type", [
    ({"type": "edit_message", "message": "edited"}, "edit_message", "message_updated"),
    ({"type": "delete_message"}, "delete_message", "message_deleted"),
    ({"type": "react", "emoji": "\N{THUMBS UP SIGN}"}, "react", "reaction_update"),
])
def test_a_change_made_while_someone_joins_reaches_them(world: MemoryChatWorld, monkeypatch: pytest.MonkeyPatch,
                                                        change: dict[str, Any], store_method: str, frame_type: str):
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "r"})
    sent = alice.send("chat_message", {"roomId": "r", "message": "original"})
    assert sent is not None
    message_id = sent["data"]["messageId"]
    bob = _join_just_before(world, monkeypatch, store_method, "r")
    data = {k: v for k, v in change.items() if k != "type"}
    refused = alice.send(change["type"], {"roomId": "r", "messageId": message_id, **data})
    assert refused is None or refused["type"] != "error", refused
    (before,) = _history(bob)
    assert before["message"] == "original" and "reactions" not in before  # the join read the history before the change
    assert frame_type in bob.types()  # so the change must come live
