"""A rejoin's `changed` (PROTOCOL "Reconnecting"): the older messages changed while the client was
away, bounded in number and in bytes, with `moreChanged` saying when the client must read its older
pages again. The rule itself is in `parley_testing.room_rules` (run here and on the handlers)."""

from __future__ import annotations

import json

from parley.core.ids import ulid_at
from parley.core.protocol import CHANGED_FRAME_SHARE, MAX_FRAME_BYTES
from parley.core.service import REJOIN_CHANGE_READS, REJOIN_CHANGES
from parley_testing.room_rules import clock_past_every_id


def wire_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def away_from(world, count: int, text: str = "m"):
    """Ann says `count` messages in the lobby; bob (in it) is away from `since`, just after them."""
    clock_past_every_id(world)
    world.use_limits(chat=1000, signals=1000, window_seconds=10)
    ann, bob = world.connect("ann"), world.connect("bob")
    for client in (ann, bob):
        client.send("join_room", {"roomId": "lobby"})
    ids = [ann.send("chat_message", {"roomId": "lobby", "message": f"{n:03d}{text}"})["data"]["messageId"] for n in range(count)]
    world.clock.advance(10)
    since = ulid_at(world.clock())
    world.disconnect(bob)
    return ann, ids, since


def test_at_most_100_changes_newest_first_and_more_changed_once_there_were_more(world):
    ann, ids, since = away_from(world, REJOIN_CHANGES + 1)
    for message_id in ids[:REJOIN_CHANGES]:
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    whole = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]
    assert [m["messageId"] for m in whole["changed"]] == ids[:REJOIN_CHANGES][::-1] and whole["moreChanged"] is False
    world.clock.advance(1)
    ann.send("react", {"roomId": "lobby", "messageId": ids[REJOIN_CHANGES], "emoji": "👍"})
    capped = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]
    assert len(capped["changed"]) == REJOIN_CHANGES and capped["moreChanged"] is True
    assert [m["messageId"] for m in capped["changed"]] == ids[1:][::-1], "the newest changes, the oldest left out"


def test_a_message_changed_twice_comes_once_as_it_stands(world):
    ann, ids, since = away_from(world, 2)
    for emoji in ("👍", "🎉"):
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": ids[0], "emoji": emoji})
    [changed] = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]["changed"]
    assert (changed["messageId"], changed["reactions"], changed["version"]) == (ids[0], {"👍": 1, "🎉": 1}, 3)


def test_large_changes_take_at_most_half_the_frame_and_the_page_fills_the_rest(world):
    """A change left out costs the client a re-read of its older pages, a message left out only the
    next catch-up page: the changes are fitted first, into half the 128 KB."""
    ann, ids, since = away_from(world, 30, "é" * 1998)  # 30 messages of 3,999 bytes
    for message_id in ids:
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    after = [ann.send("chat_message", {"roomId": "lobby", "message": f"{n:03d}" + "é" * 1998})["data"]["messageId"] for n in range(30)]
    frame = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since, "limit": 100})
    data = frame["data"]
    assert wire_size(frame) <= MAX_FRAME_BYTES
    kept = [m["messageId"] for m in data["changed"]]
    assert 10 < len(kept) < 30 and kept == ids[::-1][:len(kept)] and data["moreChanged"] is True
    assert wire_size(data["changed"]) <= CHANGED_FRAME_SHARE + 2  # its brackets
    got = [m["messageId"] for m in data["messages"]]
    assert 5 < len(got) < 30 and got == after[:len(got)] and data["hasMore"] is True
    assert wire_size(frame) > MAX_FRAME_BYTES - 5000, "the page filled what the changes left"


def react_to_each(world, ann, ids):
    for message_id in ids:
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})


def index_queries(world) -> int:
    return world.store.calls.get("messages_changed_since", 0)


def test_changes_to_messages_after_since_neither_fill_the_100_nor_set_more_changed(world):
    """A busy room's reactions to what was said while bob was away are in his rejoin's pages as they
    stand: they must not push the one older change out of `changed`, nor make `moreChanged` (which
    costs the client a re-read of every page it holds) true. They are read and passed over."""
    ann, ids, since = away_from(world, 5)
    react_to_each(world, ann, ids[:1])
    world.clock.advance(10)
    newer = [ann.send("chat_message", {"roomId": "lobby", "message": f"new{n}"})["data"]["messageId"]
             for n in range(REJOIN_CHANGES + 50)]
    react_to_each(world, ann, newer)
    before = index_queries(world)
    data = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since, "limit": 100})["data"]
    assert [m["messageId"] for m in data["changed"]] == ids[:1] and data["moreChanged"] is False
    assert index_queries(world) - before == 2, "a second page of the index, past the 101 newest changes"


def test_only_newer_changes_say_nothing_changed(world):
    """The review's case: 101 messages after `since`, each reacted to, nothing older changed."""
    ann, ids, since = away_from(world, 5)
    world.clock.advance(10)
    newer = [ann.send("chat_message", {"roomId": "lobby", "message": f"new{n}"})["data"]["messageId"]
             for n in range(REJOIN_CHANGES + 1)]
    react_to_each(world, ann, newer)
    data = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since, "limit": 100})["data"]
    assert data["changed"] == [] and data["moreChanged"] is False


def test_the_index_read_stops_at_its_budget_and_then_says_there_may_be_more(world):
    """Past REJOIN_CHANGE_READS entries (four Queries of 101) the rejoin stops reading: an older
    change behind them is not found, so `moreChanged` tells the client to read its pages again."""
    ann, ids, since = away_from(world, 5)
    react_to_each(world, ann, ids[:1])
    world.clock.advance(10)
    newer = [ann.send("chat_message", {"roomId": "lobby", "message": f"new{n}"})["data"]["messageId"]
             for n in range(REJOIN_CHANGE_READS)]
    react_to_each(world, ann, newer)
    before = index_queries(world)
    data = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since, "limit": 100})["data"]
    assert data["changed"] == [] and data["moreChanged"] is True
    assert index_queries(world) - before == REJOIN_CHANGE_READS // (REJOIN_CHANGES + 1) == 4
