"""A join that lands while a change to the room's history is being made never loses the change.

A join writes its membership and then reads the history; a message (edit, deletion, reaction)
is written and then its audience is read. Each test runs the whole join of a newcomer at the
worst moment, just before the change reaches the store, and asserts the newcomer learns of the
change one way or the other: in the history the join answers, or as a live frame. A live frame
may reach the newcomer before the join's answer does; it carries the message's `version` after
the change, higher than the copy in that history page, so the client keeps the live change.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from parley.core.ids import iso_at, ulid_at
from parley.core.model import ChatMessage
from parley.core.service import ABANDONED_CLAIM_MS
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
    [live] = [f["data"] for f in bob.take() if f["type"] == frame_type]  # so the change must come live
    # ...and may reach bob before that history page does: the versions tell him which copy is newer.
    assert (before["version"], live["version"]) == (1, 2)


def _claimed_by_an_attempt_that_died(world: MemoryChatWorld, user: Client, room: str, cmid: str, age_ms: int) -> ChatMessage:
    """What an attempt `age_ms` ago left when it died between claiming `cmid` and storing its message."""
    minted = world.clock() - age_ms
    first = ChatMessage(room, ulid_at(minted), user.user_id, user.name, "first attempt", iso_at(minted), cmid)
    assert world.store.claim_client_message_id(first) is None
    return first


def test_a_retry_long_after_an_attempt_that_died_unstored_gets_an_id_of_its_own_time(world: MemoryChatWorld):
    """A retry later than ABANDONED_CLAIM_MS is stored under an id minted now, so it sorts after what
    the room saw meanwhile (where a client's rejoin, 30 s before the newest it saw, looks); it keeps
    the first attempt's text, and the claim follows it."""
    alice, bob = world.connect("alice"), world.connect("bob")
    for c in (alice, bob):
        c.send("join_room", {"roomId": "r"})
        c.take()
    first = _claimed_by_an_attempt_that_died(world, alice, "r", "late-1", ABANDONED_CLAIM_MS + 90_000)
    meanwhile = bob.send("chat_message", {"roomId": "r", "message": "meanwhile"})
    assert meanwhile is not None
    alice.take(), bob.take()
    retry = alice.send("chat_message", {"roomId": "r", "message": "edited since", "clientMessageId": "late-1"})
    assert retry is not None and retry["type"] == "chat_update"
    [late] = [f["data"] for f in bob.take() if f["type"] == "message_received"]
    assert late["message"] == first.text and late["messageId"] > meanwhile["data"]["messageId"] > first.message_id
    assert [m.message_id for m in world.store.messages_since("r", meanwhile["data"]["messageId"], 10).messages] == [late["messageId"]]
    again = alice.send("chat_message", {"roomId": "r", "message": "late", "clientMessageId": "late-1"})
    assert again == {"type": "message_received", "data": late}  # the claim follows the stored message


def test_a_retry_soon_after_an_attempt_that_died_unstored_keeps_its_id(world: MemoryChatWorld):
    """Within ABANDONED_CLAIM_MS the first attempt may still be running: the original id is kept."""
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "r"})
    alice.take()
    first = _claimed_by_an_attempt_that_died(world, alice, "r", "soon-1", 5_000)
    alice.send("chat_message", {"roomId": "r", "message": "soon", "clientMessageId": "soon-1"})
    [stored] = [f["data"] for f in alice.take() if f["type"] == "message_received"]
    assert stored["messageId"] == first.message_id


def _meanwhile_after(world: MemoryChatWorld, monkeypatch: pytest.MonkeyPatch, store_method: str,
                     meanwhile: Callable[[], None]) -> None:
    """Run `meanwhile` (other requests, whole) right after the next call of the store's `store_method` returns."""
    real: Callable[..., Any] = getattr(world.store, store_method)
    ran: list[bool] = []

    def then_meanwhile(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not ran:
            ran.append(True)
            meanwhile()
        return result

    monkeypatch.setattr(world.store, store_method, then_meanwhile)


@pytest.mark.parametrize("store_method, age_ms", [
    ("claim_client_message_id", None),  # a first attempt, between its claim and its put
    ("move_claim", ABANDONED_CLAIM_MS + 90_000),  # a late retry, between moving the claim and its put
])
def test_a_message_another_retry_stored_first_is_never_overwritten(world: MemoryChatWorld, monkeypatch: pytest.MonkeyPatch,
                                                                     store_method: str, age_ms: int | None):
    """Two attempts of one clientMessageId (a retry from another tab, or after a reconnect, while the
    first is still running): the one that claimed the id (or moved a dead attempt's claim) is about
    to store its message when the other, finding the claim, stores that same message first and the
    room reacts to it. The first one's put must not write the message back over the reaction: it
    finds the message stored and answers with it, as a duplicate."""
    alice, bob = world.connect("alice"), world.connect("bob")
    for c in (alice, bob):
        c.send("join_room", {"roomId": "r"})
    if age_ms is not None:
        _claimed_by_an_attempt_that_died(world, alice, "r", "k-1", age_ms)
    other_tab = world.connect("alice")
    other_tab.send("join_room", {"roomId": "r"})
    for c in (alice, bob, other_tab):
        c.take()
    stored_first: list[dict[str, Any]] = []

    def the_other_attempt_and_a_reaction() -> None:
        answer = other_tab.send("chat_message", {"roomId": "r", "message": "hi", "clientMessageId": "k-1"})
        assert answer is not None and answer["type"] == "chat_update", answer
        stored_first.append(answer["data"])
        assert bob.send("react", {"roomId": "r", "messageId": answer["data"]["messageId"], "emoji": "\N{THUMBS UP SIGN}"}) is None

    _meanwhile_after(world, monkeypatch, store_method, the_other_attempt_and_a_reaction)
    reply = alice.send("chat_message", {"roomId": "r", "message": "hi", "clientMessageId": "k-1"})
    (first,) = stored_first
    stored = world.store.stored_message("r", first["messageId"])
    assert stored is not None and stored.reactions == {"\N{THUMBS UP SIGN}": frozenset({"bob"})} and stored.version == 2
    assert [m.message_id for m in world.store.newest_messages("r", 10).messages] == [first["messageId"]]
    # The attempt that lost the race answers with the message as stored: a duplicate (no chat_update).
    assert reply is not None and reply["type"] == "message_received", reply
    assert reply["data"]["messageId"] == first["messageId"] and reply["data"]["version"] == 2
    assert reply["data"]["reactions"] == {"\N{THUMBS UP SIGN}": 1}
